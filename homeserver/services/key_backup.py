"""Server-side key backups (C-S "End-to-End Encryption" > "Server-side key backups",
`key_backup.yaml`).

Backups are per user and versioned. "Keys can only be written to the most recently created
version of the backup": the current version is the newest one not deleted. Writing to another
version is 403 `M_WRONG_ROOM_KEYS_VERSION` with `current_version`; reading or deleting keys of
a version that does not exist (or was deleted) is 404 `M_NOT_FOUND`.

When a key arrives for a session the backup already holds, the better key stays (spec):
1. different `is_verified`: keep the verified one;
2. else a lower `first_message_index` wins;
3. else a lower `forwarded_count` wins (on a full tie the stored key stays).

Every change to a version's keys moves its `etag`, so a client can tell another one wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import MatrixError
from homeserver.storage.key_backup import BackupVersion, KeyBackupStore, RoomKey

Json = dict[str, Any]


def not_found(message: str = "Unknown backup version") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", message)


def bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def parse_version(version: str) -> int | None:
    """Versions are the decimal strings we hand out; anything else names no backup."""
    if not version.isascii() or not version.isdigit() or len(version) > 18:
        return None
    return int(version)


def should_replace(existing: RoomKey, new: RoomKey) -> bool:
    """The spec's three replacement rules, in order."""
    if existing.is_verified != new.is_verified:
        return new.is_verified
    if existing.first_message_index != new.first_message_index:
        return new.first_message_index < existing.first_message_index
    return new.forwarded_count < existing.forwarded_count


def _int_field(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_json(f"{where}: '{key}' must be an integer")
    if not 0 <= value < 2**53:
        raise bad_json(f"{where}: '{key}' is out of range")
    return value


def parse_key_data(room_id: str, session_id: str, data: Any) -> RoomKey:
    """A KeyBackupData object (definitions/key_backup_data.yaml)."""
    where = f"{room_id}/{session_id}"
    if not isinstance(data, dict):
        raise bad_json(f"{where}: key data must be an object")
    is_verified = data.get("is_verified")
    if not isinstance(is_verified, bool):
        raise bad_json(f"{where}: 'is_verified' must be a boolean")
    session_data = data.get("session_data")
    if not isinstance(session_data, dict):
        raise bad_json(f"{where}: 'session_data' must be an object")
    return RoomKey(
        room_id=room_id,
        session_id=session_id,
        first_message_index=_int_field(data, "first_message_index", where),
        forwarded_count=_int_field(data, "forwarded_count", where),
        is_verified=is_verified,
        session_data=session_data,
    )


def parse_room_sessions(room_id: str, body: Any) -> list[RoomKey]:
    """A RoomKeyBackup object: `{"sessions": {sessionId: KeyBackupData}}`."""
    sessions = body.get("sessions") if isinstance(body, dict) else None
    if not isinstance(sessions, dict):
        raise bad_json(f"{room_id}: 'sessions' must be an object")
    return [parse_key_data(room_id, sid, data) for sid, data in sessions.items()]


def parse_rooms(body: Any) -> list[RoomKey]:
    """The body of PUT /room_keys/keys: `{"rooms": {roomId: RoomKeyBackup}}`."""
    rooms = body.get("rooms") if isinstance(body, dict) else None
    if not isinstance(rooms, dict):
        raise bad_json("'rooms' must be an object")
    keys: list[RoomKey] = []
    for room_id, room in rooms.items():
        keys += parse_room_sessions(room_id, room)
    return keys


def key_json(key: RoomKey) -> Json:
    return {
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": key.session_data,
    }


class KeyBackupService:
    def __init__(self, store: KeyBackupStore) -> None:
        self._store = store

    # --- versions -------------------------------------------------------------------------

    async def create_version(self, user_id: str, body: Mapping[str, Any]) -> str:
        """POST /room_keys/version: the new version becomes the current one."""
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        if not isinstance(algorithm, str):
            raise MatrixError(400, "M_MISSING_PARAM", "'algorithm' must be a string")
        if not isinstance(auth_data, dict):
            raise MatrixError(400, "M_MISSING_PARAM", "'auth_data' must be an object")
        return str(await self._store.create_version(user_id, algorithm, auth_data))

    async def get_version_info(self, user_id: str, version: str | None) -> Json:
        """GET /room_keys/version[/{version}]; without a version, the current backup."""
        if version is None:
            info = await self._store.current_version(self._store.pool, user_id)
            if info is None:
                raise not_found("No current backup version")
        else:
            info = await self._existing(user_id, version)
        count = await self._store.count_keys(self._store.pool, user_id, info.version)
        return {
            "algorithm": info.algorithm,
            "auth_data": info.auth_data,
            "count": count,
            "etag": str(info.etag),
            "version": str(info.version),
        }

    async def update_version(self, user_id: str, version: str, body: Mapping[str, Any]) -> None:
        """PUT /room_keys/version/{version}: "Only `auth_data` can be modified"."""
        info = await self._existing(user_id, version)
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        if not isinstance(algorithm, str):
            raise MatrixError(400, "M_MISSING_PARAM", "'algorithm' must be a string")
        if not isinstance(auth_data, dict):
            raise MatrixError(400, "M_MISSING_PARAM", "'auth_data' must be an object")
        if algorithm != info.algorithm:
            raise MatrixError(400, "M_INVALID_PARAM", "The algorithm of a backup cannot change")
        if "version" in body and body["version"] != version:
            raise MatrixError(400, "M_INVALID_PARAM", "'version' does not match the path")
        await self._store.update_auth_data(user_id, info.version, auth_data)

    async def delete_version(self, user_id: str, version: str) -> None:
        """DELETE /room_keys/version/{version}: a deleted backup deletes again fine."""
        number = parse_version(version)
        info = (
            None
            if number is None
            else await self._store.get_version(self._store.pool, user_id, number)
        )
        if info is None:
            raise not_found()
        if not info.deleted:
            await self._store.delete_version(user_id, info.version)

    async def _existing(self, user_id: str, version: str) -> BackupVersion:
        """The version named, unless it does not exist or was deleted (404)."""
        number = parse_version(version)
        info = (
            None
            if number is None
            else await self._store.get_version(self._store.pool, user_id, number)
        )
        if info is None or info.deleted:
            raise not_found()
        return info

    # --- keys -----------------------------------------------------------------------------

    async def put_keys(self, user_id: str, version: str, keys: list[RoomKey]) -> Json:
        """PUT /room_keys/keys[/{roomId}[/{sessionId}]]: store what beats the stored keys."""
        current = await self._store.current_version(self._store.pool, user_id)
        if current is None:
            raise not_found("No current backup version")
        if parse_version(version) != current.version:
            raise MatrixError(
                403,
                "M_WRONG_ROOM_KEYS_VERSION",
                "Wrong backup version.",
                current_version=str(current.version),
            )
        async with self._store.pool.acquire() as conn, conn.transaction():
            await self._store.lock_version(conn, user_id, current.version)
            wanted = list({(key.room_id, key.session_id) for key in keys})
            stored = {
                (key.room_id, key.session_id): key
                for key in await self._store.get_sessions(conn, user_id, current.version, wanted)
            }
            chosen: dict[tuple[str, str], RoomKey] = {}
            for key in keys:
                where = (key.room_id, key.session_id)
                old = chosen.get(where) or stored.get(where)
                if old is None or should_replace(old, key):
                    chosen[where] = key
            etag = current.etag
            if chosen:
                await self._store.put_keys(conn, user_id, current.version, list(chosen.values()))
                etag = await self._store.bump_etag(conn, user_id, current.version)
            count = await self._store.count_keys(conn, user_id, current.version)
        return {"etag": str(etag), "count": count}

    async def get_keys(
        self, user_id: str, version: str, room_id: str | None, session_id: str | None
    ) -> Json:
        """GET /room_keys/keys[/{roomId}[/{sessionId}]], shaped like the request."""
        info = await self._existing(user_id, version)
        keys = await self._store.get_keys(
            self._store.pool, user_id, info.version, room_id, session_id
        )
        if session_id is not None:
            if not keys:
                raise not_found("No room_keys found")
            return key_json(keys[0])
        sessions: dict[str, Json] = {}
        rooms: dict[str, Json] = {}
        for key in keys:
            if room_id is not None:
                sessions[key.session_id] = key_json(key)
            else:
                room = rooms.setdefault(key.room_id, {"sessions": {}})
                room["sessions"][key.session_id] = key_json(key)
        return {"sessions": sessions} if room_id is not None else {"rooms": rooms}

    async def delete_keys(
        self, user_id: str, version: str, room_id: str | None, session_id: str | None
    ) -> Json:
        """DELETE /room_keys/keys[/{roomId}[/{sessionId}]]: any version still existing."""
        info = await self._existing(user_id, version)
        async with self._store.pool.acquire() as conn, conn.transaction():
            await self._store.lock_version(conn, user_id, info.version)
            deleted = await self._store.delete_keys(
                conn, user_id, info.version, room_id, session_id
            )
            etag = info.etag
            if deleted:
                etag = await self._store.bump_etag(conn, user_id, info.version)
            count = await self._store.count_keys(conn, user_id, info.version)
        return {"etag": str(etag), "count": count}
