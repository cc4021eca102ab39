"""Other servers' users' devices and keys, cached while this server receives their updates.

S2S "Device Management": "When a server wishes to determine a remote user's device list for
the first time, it should populate a local cache from the result of a `/user/keys/query` API
on the remote server. However, subsequent updates to the cache should be applied by consuming
`m.device_list_update` EDUs." Each EDU names the `prev_id`s it is relative to; one naming a
`stream_id` we never saw means an update was missed, and the list is fetched again with
`GET /user/devices` (whose answer carries the `stream_id` later EDUs refer to).
`m.signing_key_update` EDUs (S2S "End-to-End Encryption") replace the cross-signing keys.

A list is served from the cache (instead of asking the user's server) only while the list is
tracked: a local user shares a room with its owner (so their server sends us its updates), the
whole list was fetched, and no update is known to be missing. Updates sent while we shared no
room with the user never reached us, so a list is refetched before use once sharing may have
begun again (`on_events_persisted`: a join of its owner, or of a local user to a room the
owner is in); a list found not shared at query time is dropped. `RemoteDeviceKeys` is the
`FederationPoster` of homeserver/services/e2e_keys.py: it answers `/user/keys/query` for the
users it can from the cache and forwards the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final, Protocol

from federation.edus import DeviceListUpdateEdu, SigningKeyUpdateEdu
from federation.ids import server_name_of
from federation.pdu import Event
from homeserver.remote.client import Query, format_path
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.storage.remote_device_keys import (
    CachedDeviceList,
    RemoteDevice,
    RemoteDeviceKeysStore,
)

logger = logging.getLogger(__name__)

KEYS_QUERY_PATH: Final = "/_matrix/federation/v1/user/keys/query"
USER_DEVICES_PATH: Final = "/_matrix/federation/v1/user/devices/{}"
MEMBER: Final = "m.room.member"
RESYNC_TIMEOUT_S: Final = 30.0
# keys/query answer field → cached key type (user-signing keys are never shared).
CROSS_SIGNING_FIELDS: Final = {"master_keys": "master", "self_signing_keys": "self_signing"}


class KeysClient(Protocol):
    """homeserver/remote/client.py `FederationClient`."""

    async def post_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any: ...

    async def get_json(
        self,
        destination: str,
        path: str,
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


def _device_keys_of(user_id: str, device_id: str, keys: Any) -> dict[str, Any] | None:
    """A device's signed keys if they are an object about this very device, else None."""
    if not isinstance(keys, dict):
        return None
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return None
    return keys


def _cross_signing_key_of(user_id: str, key: Any) -> dict[str, Any] | None:
    if isinstance(key, dict) and key.get("user_id") == user_id:
        return key
    return None


def parse_user_devices(user_id: str, answer: Any) -> tuple[int, list[RemoteDevice], dict[str, Any]]:
    """`(stream_id, devices, cross-signing keys)` of a `GET /user/devices` answer
    (user_devices.yaml); ValueError when it is not one about `user_id`."""
    if not isinstance(answer, dict) or answer.get("user_id") != user_id:
        raise ValueError("not an answer about this user")
    stream_id, entries = answer.get("stream_id"), answer.get("devices")
    if not isinstance(stream_id, int) or isinstance(stream_id, bool):
        raise ValueError("stream_id must be an integer")
    if not isinstance(entries, list):
        raise ValueError("devices must be a list")
    devices = []
    for entry in entries:
        device_id = entry.get("device_id") if isinstance(entry, dict) else None
        if not isinstance(device_id, str):
            continue  # one bad entry is dropped alone
        name = entry.get("device_display_name")
        devices.append(
            RemoteDevice(
                device_id,
                _device_keys_of(user_id, device_id, entry.get("keys")),
                name if isinstance(name, str) else None,
            )
        )
    cross_signing = {}
    for field, key_type in (("master_key", "master"), ("self_signing_key", "self_signing")):
        key = _cross_signing_key_of(user_id, answer.get(field))
        if key is not None:
            cross_signing[key_type] = key
    return stream_id, devices, cross_signing


def keys_answer_from_cache(
    requested: Mapping[str, Collection[str]], lists: Mapping[str, CachedDeviceList]
) -> dict[str, Any]:
    """A `/user/keys/query` answer (device_keys, master_keys, self_signing_keys) built from
    cached lists; an empty device list asks for every device."""
    answer: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
    for user_id, cached in lists.items():
        wanted = requested.get(user_id) or ()
        answer["device_keys"][user_id] = {
            device.device_id: device.keys
            for device in cached.devices.values()
            if device.keys is not None and (not wanted or device.device_id in wanted)
        }
        for field, key_type in CROSS_SIGNING_FIELDS.items():
            if key_type in cached.cross_signing:
                answer[field][user_id] = cached.cross_signing[key_type]
    return answer


class RemoteDeviceKeys:
    def __init__(
        self,
        store: RemoteDeviceKeysStore,
        client: KeysClient,
        server_name: str,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._client = client
        self._server_name = server_name
        self._clock_ms = clock_ms
        self._resyncs: dict[str, asyncio.Task[bool]] = {}

    async def close(self) -> None:
        for task in list(self._resyncs.values()):
            task.cancel()
        await asyncio.gather(*self._resyncs.values(), return_exceptions=True)

    # --- the FederationPoster of E2eKeysService ---------------------------------------------

    async def post_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """`POST` to `destination`; a `/user/keys/query` is answered from the cache for the
        users whose lists are tracked, and only the others are asked for."""
        requested = content.get("device_keys") if isinstance(content, dict) else None
        if path != KEYS_QUERY_PATH or not isinstance(requested, dict):
            return await self._client.post_json(
                destination, path, content, query, timeout_s=timeout_s
            )
        cached = await self._tracked_lists(requested)
        answer = keys_answer_from_cache(requested, cached)
        rest = {user_id: devices for user_id, devices in requested.items() if user_id not in cached}
        if not rest:
            return answer
        remote = await self._client.post_json(
            destination, path, {**content, "device_keys": rest}, query, timeout_s=timeout_s
        )
        if not isinstance(remote, dict):
            return remote  # E2eKeysService reports it as malformed
        await self._remember_keys_answer(rest, remote)
        for field, value in remote.items():
            if field in answer and isinstance(value, dict):
                answer[field].update(value)
            elif field not in answer:
                answer[field] = value
        return answer

    async def _tracked_lists(self, requested: Mapping[str, Any]) -> dict[str, CachedDeviceList]:
        """The cached lists of the requested users that may be served: a local user shares a
        room with them and no update is missing. Lists of users nobody here shares a room with
        any more are forgotten: their server stopped sending us updates."""
        lists = await self._store.get_device_lists(list(requested))
        if not lists:
            return {}
        sharing = await self._store.users_sharing_a_room_with_local_users(list(lists))
        stale = [user_id for user_id in lists if user_id not in sharing]
        if stale:
            await self._store.forget(stale)
        return {
            user_id: cached
            for user_id, cached in lists.items()
            if user_id in sharing and not cached.resync_needed
        }

    async def _remember_keys_answer(
        self, requested: Mapping[str, Any], answer: Mapping[str, Any]
    ) -> None:
        """Cache the whole lists (asked with no device IDs) of users we share a room with."""
        device_keys = answer.get("device_keys")
        if not isinstance(device_keys, dict):
            return
        whole = [
            user_id
            for user_id, devices in requested.items()
            if devices == [] and isinstance(device_keys.get(user_id), dict)
        ]
        if not whole:
            return
        for user_id in await self._store.users_sharing_a_room_with_local_users(whole):
            devices = [
                RemoteDevice(device_id, _device_keys_of(user_id, device_id, keys))
                for device_id, keys in device_keys[user_id].items()
            ]
            cross_signing: dict[str, dict[str, Any]] = {}
            for field, key_type in CROSS_SIGNING_FIELDS.items():
                by_user = answer.get(field)
                key = by_user.get(user_id) if isinstance(by_user, dict) else None
                checked = _cross_signing_key_of(user_id, key)
                if checked is not None:
                    cross_signing[key_type] = checked
            # keys/query carries no stream_id: the next update naming a prev_id resyncs.
            await self._store.replace_device_list(
                user_id, None, devices, cross_signing, self._clock_ms()
            )

    # --- EDUs -------------------------------------------------------------------------------

    async def on_device_list_update(self, edu: DeviceListUpdateEdu) -> None:
        """S2S "Device Management": apply the update if every `prev_id` is known; resync
        through `/user/devices` otherwise. Lists we do not cache are left alone."""
        position = await self._store.get_list_position(edu.user_id)
        if position is None:
            return
        if edu.stream_id in position.seen_stream_ids:
            return  # already applied (an EDU sent twice)
        known = all(prev in position.seen_stream_ids for prev in edu.prev_id)
        if position.resync_needed or not known:
            await self._store.mark_resync_needed(edu.user_id)
            self.start_resync(edu.user_id)
            return
        device = RemoteDevice(
            edu.device_id,
            _device_keys_of(edu.user_id, edu.device_id, edu.keys),
            edu.device_display_name,
        )
        await self._store.apply_device_update(
            edu.user_id, edu.stream_id, device, edu.deleted, self._clock_ms()
        )

    async def on_signing_key_update(self, edu: SigningKeyUpdateEdu) -> None:
        """S2S "End-to-End Encryption" `m.signing_key_update`: the new master and/or
        self-signing key of a user whose list we cache."""
        keys = {}
        for key_type, key in (("master", edu.master_key), ("self_signing", edu.self_signing_key)):
            checked = _cross_signing_key_of(edu.user_id, key)
            if checked is not None:
                keys[key_type] = checked
        if keys:
            await self._store.set_cross_signing_keys(edu.user_id, keys, self._clock_ms())

    # --- tracking ----------------------------------------------------------------------------

    async def on_events_persisted(self, events: Sequence[Event]) -> None:
        """The pipeline's persisted hook: joins may start a shared room with users whose
        updates we were not receiving, so their cached lists are refetched before use."""
        joined_remote: set[str] = set()
        rooms_joined_locally: set[str] = set()
        for event in events:
            if event.type != MEMBER or event.membership != "join" or event.state_key is None:
                continue
            if server_name_of(event.state_key) == self._server_name:
                rooms_joined_locally.add(event.room_id)
            else:
                joined_remote.add(event.state_key)
        if joined_remote:
            await self._store.mark_users_for_resync(joined_remote)
        if rooms_joined_locally:
            await self._store.mark_room_members_for_resync(rooms_joined_locally)

    # --- resync -----------------------------------------------------------------------------

    def start_resync(self, user_id: str) -> asyncio.Task[bool]:
        """Fetch `user_id`'s list again in the background (one fetch per user at a time)."""
        task = self._resyncs.get(user_id)
        if task is None or task.done():
            task = asyncio.create_task(self.resync(user_id), name=f"device-list-resync:{user_id}")
            self._resyncs[user_id] = task
            task.add_done_callback(lambda done: self._forget_task(user_id, done))
        return task

    def _forget_task(self, user_id: str, task: asyncio.Task[bool]) -> None:
        if self._resyncs.get(user_id) is task:
            del self._resyncs[user_id]

    async def resync(self, user_id: str) -> bool:
        """`GET /user/devices/{userId}` replaces the cached list; False if it failed (the list
        stays marked for resync, so queries go to the user's server meanwhile)."""
        server = server_name_of(user_id)
        try:
            answer = await self._client.get_json(
                server, format_path(USER_DEVICES_PATH, user_id), timeout_s=RESYNC_TIMEOUT_S
            )
            stream_id, devices, cross_signing = parse_user_devices(user_id, answer)
        except (RemoteError, RemoteUnreachable, ValueError) as exc:
            logger.info("could not resync the device list of %s: %s", user_id, exc)
            return False
        await self._store.replace_device_list(
            user_id, stream_id, devices, cross_signing, self._clock_ms()
        )
        return True
