"""Device list changes (C-S "Tracking the device list for a user", S2S "Device Management").

Whenever a user's devices or keys change, a row goes to the device list stream at a new
position, and every local user sharing a room with them (and the user themself) is woken:
their next /sync lists the user in `device_lists.changed`. For a local user, the other servers
sharing a room are sent an `m.device_list_update` EDU.

S2S "Device Management": the EDUs of one user form a sequence, each with a unique `stream_id`
(its position in the device list stream) and a `prev_id` naming the update it is relative
to. Our updates for a user are written in series (one per-user lock), so `prev_id` is exactly
one ID: the user's previous change in the stream, the same position GET /user/devices
reports as `stream_id` until this update. A server that missed any update (or resynced
earlier) finds a `prev_id` it does not know and resyncs through GET /user/devices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from federation.ids import server_name_of
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.e2e_keys import E2eKeysStore


class EduSender(Protocol):
    """homeserver/services/federation_sender.py `FederationSender`."""

    async def send_edu(
        self,
        destinations: str | Iterable[str],
        edu_type: str,
        content: Mapping[str, Any],
        *,
        durable: bool | None = None,
    ) -> None: ...


class DeviceLists:
    def __init__(
        self,
        store: E2eKeysStore,
        stream: AuxStream,
        server_name: str,
        sender: EduSender | None = None,
    ) -> None:
        self._store = store
        self._stream = stream
        self._server_name = server_name
        self._sender = sender
        # Per local user: the lock that keeps their updates in series, and how many hold or
        # wait for it (the entry goes once nobody does, so the map stays small).
        self._series: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _in_series(self, user_id: str) -> AsyncIterator[None]:
        lock, users = self._series.get(user_id, (asyncio.Lock(), 0))
        self._series[user_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._series[user_id]
            if users == 1:
                del self._series[user_id]
            else:
                self._series[user_id] = (lock, users - 1)

    @property
    def current_position(self) -> int:
        return self._stream.current_position

    async def mark_changed(
        self,
        user_id: str,
        device_id: str | None = None,
        *,
        keys: Mapping[str, Any] | None = None,
        deleted: bool = False,
    ) -> int:
        """Record that `user_id`'s device list changed; return the new stream position."""
        concerned = await self._store.get_local_users_sharing_rooms(user_id)
        if server_name_of(user_id) != self._server_name:
            async with self._stream.write(user_ids=concerned) as position:
                await self._store.add_device_list_change(position, user_id)
            return position
        concerned.add(user_id)
        async with self._in_series(user_id):
            # The change this one follows: what GET /user/devices answered until now.
            prev_id = await self._store.get_device_list_stream_id(user_id)
            async with self._stream.write(user_ids=concerned) as position:
                await self._store.add_device_list_change(position, user_id)
            if device_id is not None:
                await self._send_update(user_id, device_id, position, prev_id, keys, deleted)
        return position

    async def _send_update(
        self,
        user_id: str,
        device_id: str,
        stream_id: int,
        prev_id: int,
        keys: Mapping[str, Any] | None,
        deleted: bool,
    ) -> None:
        """S2S "Device Management": `m.device_list_update` to every server sharing a room,
        relative to the user's previous change `prev_id` (none: the user's first change)."""
        if self._sender is None:
            return
        servers = {server_name_of(u) for u in await self._store.get_users_sharing_rooms(user_id)}
        servers.discard(self._server_name)
        if not servers:
            return
        content: dict[str, Any] = {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            "prev_id": [prev_id] if prev_id else [],
            "deleted": deleted,
        }
        if keys is not None:
            content["keys"] = dict(keys)
        await self._sender.send_edu(sorted(servers), "m.device_list_update", content)
