"""Device list changes (C-S "Tracking the device list for a user", S2S "Device Management").

Whenever a user's devices or keys change, a row goes to the device list stream at a new
position, and every local user sharing a room with them (and the user themself) is woken:
their next /sync lists the user in `device_lists.changed`. For a local user, the other servers
sharing a room are sent an `m.device_list_update` EDU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
        if server_name_of(user_id) == self._server_name:
            concerned.add(user_id)
        async with self._stream.write(user_ids=concerned) as position:
            await self._store.add_device_list_change(position, user_id)
        if device_id is not None and server_name_of(user_id) == self._server_name:
            await self._send_update(user_id, device_id, position, keys, deleted)
        return position

    async def _send_update(
        self,
        user_id: str,
        device_id: str,
        stream_id: int,
        keys: Mapping[str, Any] | None,
        deleted: bool,
    ) -> None:
        """S2S "Device Management": `m.device_list_update` to every server sharing a room.
        `prev_id` is left empty, so a server that missed an update resyncs through
        GET /user/devices."""
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
            "prev_id": [],
            "deleted": deleted,
        }
        if keys is not None:
            content["keys"] = dict(keys)
        await self._sender.send_edu(sorted(servers), "m.device_list_update", content)
