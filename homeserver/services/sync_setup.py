"""Wiring of /sync and the per-user data around it (called from homeserver/app.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from homeserver.services.account_data import AccountDataService
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.notifier import Notifier
from homeserver.services.push import PushService
from homeserver.services.receipts import ReceiptsService
from homeserver.services.state import RoomStateCache
from homeserver.services.sync import SyncService
from homeserver.services.sync_filters import SyncFilters
from homeserver.services.sync_rooms import RoomSyncBuilder
from homeserver.services.sync_streams import AuxStream, SyncStreams
from homeserver.services.typing import TypingService
from homeserver.services.visibility import VisibilityLoader
from homeserver.storage.events import EventsStore
from homeserver.storage.push_data import PushDataStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.sync_data import SyncDataStore


@dataclass(frozen=True, slots=True)
class SyncServices:
    store: SyncDataStore
    push_store: PushDataStore
    streams: SyncStreams
    filters: SyncFilters
    typing: TypingService
    account_data: AccountDataService
    receipts: ReceiptsService
    push: PushService
    sync: SyncService

    @classmethod
    async def start(
        cls,
        pool: asyncpg.Pool,
        server_name: str,
        *,
        events: EventsStore,
        rooms: RoomsStore,
        state: RoomStateCache,
        notifier: Notifier,
        pipeline: EventPipeline,
    ) -> SyncServices:
        """Build everything; streams resume from the positions stored in the database. The
        push evaluator becomes a persisted hook of `pipeline`."""
        store, push_store = SyncDataStore(pool), PushDataStore(pool)

        async def stream(name: str) -> AuxStream:
            async def allocate(count: int) -> list[int]:
                return await store.allocate_stream_ids(name, count)

            return AuxStream(name, await store.get_max_stream_id(name), allocate)

        streams = SyncStreams(
            notifier,
            typing=AuxStream.in_memory("typing"),
            receipts=await stream("receipts"),
            account_data=await stream("account_data"),
            to_device=await stream("to_device"),
            device_lists=await stream("device_lists"),
        )
        typing = TypingService(streams.typing)
        account_data = AccountDataService(store, streams.account_data)
        receipts = ReceiptsService(store, events, state, account_data, streams.receipts)
        push = PushService(push_store, store, state, account_data, server_name)
        pipeline.add_persisted_hook(push.on_events_persisted)
        builder = RoomSyncBuilder(events, state, store, VisibilityLoader(state))
        builder.ignored = IgnoredUsers(account_data)
        sync = SyncService(
            streams=streams,
            rooms=rooms,
            events=events,
            state=state,
            store=store,
            push_store=push_store,
            builder=builder,
            typing=typing,
            receipts=receipts,
            account_data=account_data,
            push=push,
        )
        return cls(
            store,
            push_store,
            streams,
            SyncFilters(store),
            typing,
            account_data,
            receipts,
            push,
            sync,
        )

    def close(self) -> None:
        self.typing.close()
