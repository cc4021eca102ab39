"""Device keys, one-time and fallback keys (C-S "End-to-End Encryption", keys.yaml).

POST /keys/upload, /keys/query, /keys/claim and GET /keys/changes. Remote users are asked
through S2S `POST /v1/user/keys/query` and `/v1/user/keys/claim`; a server that cannot be
reached is listed under `failures`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from federation.ids import is_valid_user_id, server_name_of
from homeserver.errors import MatrixError
from homeserver.services.device_lists import DeviceLists
from homeserver.services.sync_token import SyncToken
from homeserver.storage.e2e_keys import E2eKeysStore, KeyRow, SignatureRow

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS: Final = 10_000
MAX_KEYS_PER_UPLOAD: Final = 1000
CROSS_SIGNING_FIELDS: Final = {
    "master": "master_keys",
    "self_signing": "self_signing_keys",
    "user_signing": "user_signing_keys",
}
# Devices whose key counts /sync keeps in memory (least recently used dropped first).
KEY_COUNT_CACHE_SIZE: Final = 10_000

KeyCounts = tuple[dict[str, int], list[str]]


class FederationPoster(Protocol):
    """homeserver/remote/client.py `FederationClient`."""

    async def post_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Any = None,
        *,
        timeout_s: float | None = None,
    ) -> Any: ...


def bad_json(reason: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", reason)


def _object(body: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = body.get(field, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_json(f"{field} must be an object")
    return value


def parse_key_map(body: Mapping[str, Any], field: str) -> list[KeyRow]:
    """`{"<algorithm>:<key_id>": key}` → rows (keys.yaml `one_time_keys`, `fallback_keys`)."""
    keys = _object(body, field)
    if len(keys) > MAX_KEYS_PER_UPLOAD:
        raise bad_json(f"at most {MAX_KEYS_PER_UPLOAD} {field} per upload")
    rows = []
    for name, key in keys.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or not algorithm or not key_id:
            raise bad_json(f"{field}: {name!r} is not '<algorithm>:<key_id>'")
        if not isinstance(key, str | dict):
            raise bad_json(f"{field}: {name!r} must be a string or a key object")
        rows.append((algorithm, key_id, key))
    return rows


def user_map(body: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = _object(body, field)
    for user_id in value:
        if not is_valid_user_id(user_id, historical=True):
            raise bad_json(f"{field}: {user_id!r} is not a user ID")
    return value


def timeout_seconds(body: Mapping[str, Any]) -> float:
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise bad_json("timeout must be a non-negative integer")
    return min(timeout, 60_000) / 1000


def merge_signatures(key: dict[str, Any], signatures: list[SignatureRow]) -> dict[str, Any]:
    for row in signatures:
        key.setdefault("signatures", {}).setdefault(row.signer_user_id, {})[row.signer_key_id] = (
            row.signature
        )
    return key


def public_key_of(key: Mapping[str, Any]) -> str | None:
    """The single public key of a CrossSigningKey (its `keys` value)."""
    keys = key.get("keys")
    if isinstance(keys, dict) and len(keys) == 1:
        value = next(iter(keys.values()))
        return value if isinstance(value, str) else None
    return None


class E2eKeysService:
    def __init__(
        self,
        store: E2eKeysStore,
        device_lists: DeviceLists,
        server_name: str,
        remote: FederationPoster | None = None,
    ) -> None:
        self._store = store
        self._device_lists = device_lists
        self._server_name = server_name
        self._remote = remote
        # (user, device) → `device_one_time_keys_count`, `device_unused_fallback_key_types`:
        # every /sync response carries them, and only this service changes the keys (upload,
        # claim — local or over federation — and device deletion), so each change drops the
        # device's entry. `_key_generation` counts the drops: a read that overlapped one is not
        # cached (it may predate the change).
        self._key_counts: OrderedDict[tuple[str, str], KeyCounts] = OrderedDict()
        self._key_generation = 0

    def is_local(self, user_id: str) -> bool:
        return server_name_of(user_id) == self._server_name

    # --- POST /keys/upload -------------------------------------------------------------------

    async def upload_keys(
        self, user_id: str, device_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        device_keys = _object(body, "device_keys")
        one_time_keys = parse_key_map(body, "one_time_keys")
        fallback_keys = parse_key_map(body, "fallback_keys")
        if device_keys:
            # keys.yaml: user_id and device_id "Must match the user/device ID used when
            # logging in".
            if device_keys.get("user_id") != user_id or device_keys.get("device_id") != device_id:
                raise bad_json("device_keys.user_id/device_id do not match the requester")
            if not isinstance(device_keys.get("keys"), dict):
                raise bad_json("device_keys.keys must be an object")
            if await self._store.set_device_keys(user_id, device_id, device_keys):
                await self._device_lists.mark_changed(user_id, device_id, keys=device_keys)
        try:
            await self._store.add_one_time_keys(user_id, device_id, one_time_keys)
            await self._store.set_fallback_keys(user_id, device_id, fallback_keys)
        finally:
            self._forget_key_counts(user_id, [device_id])
        counts = await self._store.count_one_time_keys(user_id, device_id)
        # Clients expect the count of signed_curve25519 even when it is zero.
        counts.setdefault("signed_curve25519", 0)
        return {"one_time_key_counts": counts}

    # --- POST /keys/query --------------------------------------------------------------------

    async def query_keys(self, requester_id: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        requested = user_map(body, "device_keys")
        for devices in requested.values():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json("device_keys values must be lists of device IDs")
        local = {u: d for u, d in requested.items() if self.is_local(u)}
        result = await self.query_local_keys(local, requester_id)
        result["failures"] = {}
        remote = {u: d for u, d in requested.items() if not self.is_local(u)}
        if remote:
            await self._query_remote(remote, timeout_seconds(body), result)
        return result

    async def query_local_keys(
        self, requested: Mapping[str, list[str]], requester_id: str | None
    ) -> dict[str, Any]:
        """Keys of local users; an empty device list means every device. `user_signing_keys`
        are shown only to their owner; `requester_id` None is another server."""
        user_ids = list(requested)
        stored = await self._store.get_device_keys(user_ids)
        signatures: dict[tuple[str, str], list[SignatureRow]] = {}
        for row in await self._store.get_signatures(user_ids):
            signatures.setdefault((row.target_user_id, row.target_key), []).append(row)
        device_keys: dict[str, dict[str, Any]] = {}
        for user_id, wanted in requested.items():
            devices = stored.get(user_id, {})
            device_keys[user_id] = {
                device_id: merge_signatures(keys, signatures.get((user_id, device_id), []))
                for device_id, keys in devices.items()
                if not wanted or device_id in wanted
            }
        result: dict[str, Any] = {"device_keys": device_keys}
        for field in CROSS_SIGNING_FIELDS.values():
            result[field] = {}
        for user_id, keys in (await self._store.get_cross_signing_keys(user_ids)).items():
            for key_type, key in keys.items():
                if key_type == "user_signing" and user_id != requester_id:
                    continue
                public = public_key_of(key)
                merge_signatures(key, signatures.get((user_id, public or ""), []))
                result[CROSS_SIGNING_FIELDS[key_type]][user_id] = key
        return result

    async def _query_remote(
        self, requested: Mapping[str, list[str]], timeout_s: float, result: dict[str, Any]
    ) -> None:
        by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, devices in requested.items():
            by_server.setdefault(server_name_of(user_id), {})[user_id] = devices

        async def ask(server: str, users: dict[str, list[str]]) -> None:
            answer = await self._post(
                server,
                "/_matrix/federation/v1/user/keys/query",
                {"device_keys": users},
                timeout_s,
                result,
            )
            if answer is None:
                return
            for field in ("device_keys", "master_keys", "self_signing_keys"):
                for user_id, value in (answer.get(field) or {}).items():
                    # A server speaks only for its own users.
                    if user_id in users and isinstance(value, dict):
                        result[field][user_id] = value

        await asyncio.gather(*(ask(server, users) for server, users in by_server.items()))

    async def _post(
        self,
        server: str,
        path: str,
        content: dict[str, Any],
        timeout_s: float,
        result: dict[str, Any],
    ) -> dict[str, Any] | None:
        if self._remote is None:
            result["failures"][server] = {"errcode": "M_UNKNOWN", "error": "Federation disabled"}
            return None
        try:
            answer = await self._remote.post_json(server, path, content, timeout_s=timeout_s)
        except Exception as exc:  # any failure of that server is reported, not raised
            logger.info("key request to %s failed: %s", server, exc)
            result["failures"][server] = {"status": 503, "message": str(exc) or type(exc).__name__}
            return None
        if not isinstance(answer, dict):
            result["failures"][server] = {"status": 502, "message": "Malformed response"}
            return None
        return answer

    # --- POST /keys/claim --------------------------------------------------------------------

    async def claim_keys(self, body: Mapping[str, Any]) -> dict[str, Any]:
        requested = user_map(body, "one_time_keys")
        for devices in requested.values():
            if not isinstance(devices, dict) or not all(
                isinstance(a, str) for a in devices.values()
            ):
                raise bad_json("one_time_keys values must map device IDs to algorithms")
        local = {u: d for u, d in requested.items() if self.is_local(u)}
        result: dict[str, Any] = {
            "one_time_keys": await self.claim_local_keys(local),
            "failures": {},
        }
        by_server: dict[str, dict[str, Any]] = {}
        for user_id, devices in requested.items():
            if not self.is_local(user_id):
                by_server.setdefault(server_name_of(user_id), {})[user_id] = devices

        async def ask(server: str, users: dict[str, Any]) -> None:
            answer = await self._post(
                server,
                "/_matrix/federation/v1/user/keys/claim",
                {"one_time_keys": users},
                timeout_seconds(body),
                result,
            )
            for user_id, value in ((answer or {}).get("one_time_keys") or {}).items():
                if user_id in users and isinstance(value, dict):
                    result["one_time_keys"][user_id] = value

        await asyncio.gather(*(ask(server, users) for server, users in by_server.items()))
        return result

    async def claim_local_keys(
        self, requested: Mapping[str, Mapping[str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """One key per (user, device, algorithm): a one-time key, else the fallback key."""
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, devices in requested.items():
            for device_id, algorithm in devices.items():
                try:
                    key = await self._store.claim_key(user_id, device_id, algorithm)
                finally:
                    self._forget_key_counts(user_id, [device_id])
                if key is not None:
                    claimed.setdefault(user_id, {})[device_id] = {
                        f"{key.algorithm}:{key.key_id}": key.key
                    }
        return claimed

    # --- device deletion ---------------------------------------------------------------------

    async def on_devices_deleted(self, user_id: str, device_ids: Sequence[str]) -> None:
        """AccountService's hook after devices are deleted (logout, DELETE /devices, password
        change, deactivation): their keys and to-device inbox go, and each deletion is a device
        list change (C-S "Tracking the device list for a user"; S2S "Device Management":
        `m.device_list_update` with `deleted: true`)."""
        try:
            await self._store.delete_device_keys(user_id, device_ids)
        finally:
            self._forget_key_counts(user_id, device_ids)
        await self._store.delete_to_device_inbox(user_id, device_ids)
        for device_id in device_ids:
            await self._device_lists.mark_changed(user_id, device_id, deleted=True)

    # --- GET /keys/changes and /sync ---------------------------------------------------------

    async def device_list_delta(
        self, user_id: str, since: SyncToken, now: SyncToken
    ) -> tuple[set[str], set[str]]:
        """(changed, left) between two sync tokens (C-S "Tracking the device list for a
        user"): users sharing a room whose device list changed or who newly share a room; users
        who stopped sharing every room."""
        sharing = await self._store.get_users_sharing_rooms(user_id)
        changed = await self._store.get_changed_users(sharing, since.device_lists, now.device_lists)
        left: set[str] = set()
        if now.events > since.events:
            changes = await self._store.get_membership_changes(user_id, since.events, now.events)
            rooms_joined = {
                room for room, member, m in changes if member == user_id and m == "join"
            }
            changed |= {member for _, member, m in changes if m == "join"}
            changed |= await self._store.get_joined_members(rooms_joined)
            rooms_left = {room for room, member, m in changes if member == user_id and m != "join"}
            gone = {member for _, member, m in changes if m in ("leave", "ban")}
            left = (gone | await self._store.get_joined_members(rooms_left)) - sharing
        changed &= sharing
        return changed, left

    async def device_list_stream_id(self, user_id: str) -> int:
        return await self._store.get_device_list_stream_id(user_id)

    async def key_counts(self, user_id: str, device_id: str) -> KeyCounts:
        """`device_one_time_keys_count` and `device_unused_fallback_key_types` for /sync
        (from memory when nothing changed the device's keys since they were last read)."""
        key = (user_id, device_id)
        cached = self._key_counts.get(key)
        if cached is not None:
            self._key_counts.move_to_end(key)
            return dict(cached[0]), list(cached[1])
        generation = self._key_generation
        counts = await self._store.count_one_time_keys(user_id, device_id)
        counts.setdefault("signed_curve25519", 0)
        fallback_types = await self._store.unused_fallback_key_types(user_id, device_id)
        if generation == self._key_generation:
            self._key_counts[key] = (dict(counts), list(fallback_types))
            if len(self._key_counts) > KEY_COUNT_CACHE_SIZE:
                self._key_counts.popitem(last=False)
        return counts, fallback_types

    def _forget_key_counts(self, user_id: str, device_ids: Sequence[str]) -> None:
        self._key_generation += 1
        for device_id in device_ids:
            self._key_counts.pop((user_id, device_id), None)
