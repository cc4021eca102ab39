"""Our users' devices and end-to-end keys, for other servers.

S2S "Device Management" (`GET /v1/user/devices/{userId}`) and "End-to-End Encryption"
(`POST /v1/user/keys/query`, `POST /v1/user/keys/claim`). Only local users are answered
("Requested users must be local to the receiving homeserver").

Keys come from homeserver/services/e2e_keys.py; without it (`keys` None) the answers are
well-formed and empty. `stream_id` is the user's newest device list change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from federation.ids import is_valid_user_id, server_name_of
from homeserver.errors import MatrixError
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.storage import accounts, users

# The device list's position; constant until device list updates are streamed.
DEVICE_LIST_STREAM_ID = 0


def bad_json(reason: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", reason)


def _user_map(body: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = body.get(field)
    if not isinstance(value, dict):
        raise bad_json(f"{field} must be an object keyed by user ID")
    for user_id in value:
        if not is_valid_user_id(user_id, historical=True):
            raise bad_json(f"{field}: {user_id!r} is not a user ID")
    return value


class FederationUserKeys:
    def __init__(
        self, pool: asyncpg.Pool, server_name: str, keys: E2eKeysService | None = None
    ) -> None:
        self._pool = pool
        self._server_name = server_name
        self._keys = keys

    def _is_local(self, user_id: str) -> bool:
        return server_name_of(user_id) == self._server_name

    async def _local_user_exists(self, user_id: str) -> bool:
        user = await users.get_user(self._pool, user_id)
        return user is not None

    async def get_devices(self, user_id: str) -> dict[str, Any]:
        """GET /v1/user/devices/{userId}: 403 for another server's user, 404 for an unknown
        one. Deactivated users have no devices left."""
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
        if not self._is_local(user_id):
            raise MatrixError(403, "M_FORBIDDEN", "User is not local to this server")
        if not await self._local_user_exists(user_id):
            raise MatrixError(404, "M_NOT_FOUND", "User not found")
        keys: dict[str, Any] = {"device_keys": {user_id: {}}}
        stream_id = DEVICE_LIST_STREAM_ID
        if self._keys is not None:
            keys = await self._keys.query_local_keys({user_id: []}, None)
            stream_id = await self._keys.device_list_stream_id(user_id)
        devices = []
        for device in await accounts.list_devices(self._pool, user_id):
            entry: dict[str, Any] = {"device_id": device.device_id}
            if device.display_name is not None:
                entry["device_display_name"] = device.display_name
            device_keys = keys["device_keys"][user_id].get(device.device_id)
            if device_keys is not None:
                entry["keys"] = device_keys
            devices.append(entry)
        answer = {"user_id": user_id, "stream_id": stream_id, "devices": devices}
        for field, name in (
            ("master_keys", "master_key"),
            ("self_signing_keys", "self_signing_key"),
        ):
            if user_id in keys.get(field, {}):
                answer[name] = keys[field][user_id]
        return answer

    async def query_keys(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/user/keys/query: `device_keys` per local user asked for. With no stored
        device keys, each user maps to an empty object (devices without keys are omitted)."""
        requested = _user_map(body, "device_keys")
        local: dict[str, list[str]] = {}
        for user_id, device_ids in requested.items():
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise bad_json("device_keys values must be lists of device IDs")
            if self._is_local(user_id) and await self._local_user_exists(user_id):
                local[user_id] = device_ids
        if self._keys is None:
            return {"device_keys": {user_id: {} for user_id in local}}
        # Another server is never shown user-signing keys (S2S "End-to-End Encryption").
        answer = await self._keys.query_local_keys(local, None)
        answer.pop("user_signing_keys", None)
        return {field: value for field, value in answer.items() if value or field == "device_keys"}

    async def claim_keys(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/user/keys/claim: no one-time keys are stored, so none can be claimed."""
        requested = _user_map(body, "one_time_keys")
        for algorithms in requested.values():
            if not isinstance(algorithms, dict) or not all(
                isinstance(a, str) for a in algorithms.values()
            ):
                raise bad_json("one_time_keys values must map device IDs to algorithms")
        if self._keys is None:
            return {"one_time_keys": {}}
        local = {u: a for u, a in requested.items() if self._is_local(u)}
        return {"one_time_keys": await self._keys.claim_local_keys(local)}
