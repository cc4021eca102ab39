"""Wiring of pushers (called from homeserver/app/services.py): the pushers API and the HTTP
pusher pool, told of every `notify` action by push evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from homeserver.config import PushersConfig
from homeserver.services.push import PushService
from homeserver.services.pushers import PusherService
from homeserver.services.pushers_gateway import GatewayClient
from homeserver.services.pushers_http import HttpPusherPool
from homeserver.services.state import RoomStateCache
from homeserver.storage.push_data import PushDataStore
from homeserver.storage.pushers import PushersStore
from homeserver.storage.rooms import RoomsStore


@dataclass(frozen=True, slots=True)
class PusherServices:
    pushers: PusherService
    pool: HttpPusherPool

    @classmethod
    def build(
        cls,
        config: PushersConfig,
        pool: asyncpg.Pool,
        *,
        push: PushService,
        push_store: PushDataStore,
        rooms: RoomsStore,
        state: RoomStateCache,
    ) -> PusherServices:
        store = PushersStore(pool)
        gateway = GatewayClient(
            allowlist=config.gateway_ip_range_allowlist, timeout_s=config.gateway_timeout
        )
        http_pool = HttpPusherPool(
            store=store, push_store=push_store, rooms=rooms, state=state, gateway=gateway
        )
        push.add_notify_listener(http_pool.on_notify)
        pushers = PusherService(
            store,
            allow_http_gateways=config.allow_http_gateways,
            on_pusher_set=http_pool.note_pusher_set,
        )
        return cls(pushers, http_pool)

    async def close(self) -> None:
        await self.pool.close()
