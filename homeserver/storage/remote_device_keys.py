"""SQL of the cache of other servers' users' devices and keys (schema/0013_federation_gaps.sql).

S2S "Device Management": a server populates its cache of a remote user's device list from a
full answer (`GET /user/devices`, or `POST /user/keys/query` for every device) and then applies
`m.device_list_update` EDUs, each relative to the `prev_id`s it names. The `stream_id`s applied
since the last full answer are kept so that a missed update can be told from a known one.
Cross-signing keys ride along (`master_key`, `self_signing_key`; S2S "End-to-End Encryption").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

# Cross-signing key types another server may tell us about (never "user_signing").
SHARED_KEY_TYPES = ("master", "self_signing")


@dataclass(frozen=True, slots=True)
class RemoteDevice:
    device_id: str
    keys: dict[str, Any] | None  # the signed DeviceKeys; None if it uploaded none
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class CachedDeviceList:
    user_id: str
    stream_id: int | None
    resync_needed: bool
    devices: dict[str, RemoteDevice] = field(default_factory=dict)
    # "master" / "self_signing" → the signed CrossSigningKey.
    cross_signing: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ListPosition:
    """Where a cached list stands, for the `prev_id` check of the next update."""

    stream_id: int | None
    resync_needed: bool
    seen_stream_ids: frozenset[int]


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(dict(value)).decode()


class RemoteDeviceKeysStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- reading ----------------------------------------------------------------------------

    async def get_device_lists(self, user_ids: Collection[str]) -> dict[str, CachedDeviceList]:
        """The cached lists of those of `user_ids` that have one."""
        ids = list(user_ids)
        async with self._pool.acquire() as conn:
            heads = await conn.fetch(
                "SELECT user_id, stream_id, resync_needed FROM remote_device_lists"
                " WHERE user_id = ANY($1::text[])",
                ids,
            )
            if not heads:
                return {}
            devices = await conn.fetch(
                "SELECT user_id, device_id, keys, display_name FROM remote_device_keys"
                " WHERE user_id = ANY($1::text[])",
                ids,
            )
            keys = await conn.fetch(
                "SELECT user_id, key_type, key_json FROM remote_cross_signing_keys"
                " WHERE user_id = ANY($1::text[])",
                ids,
            )
        lists = {
            row["user_id"]: CachedDeviceList(row["user_id"], row["stream_id"], row["resync_needed"])
            for row in heads
        }
        for row in devices:
            keys_json = None if row["keys"] is None else orjson.loads(row["keys"])
            lists[row["user_id"]].devices[row["device_id"]] = RemoteDevice(
                row["device_id"], keys_json, row["display_name"]
            )
        for row in keys:
            lists[row["user_id"]].cross_signing[row["key_type"]] = orjson.loads(row["key_json"])
        return lists

    async def get_list_position(self, user_id: str) -> ListPosition | None:
        """None when `user_id`'s list is not cached."""
        async with self._pool.acquire() as conn:
            head = await conn.fetchrow(
                "SELECT stream_id, resync_needed FROM remote_device_lists WHERE user_id = $1",
                user_id,
            )
            if head is None:
                return None
            seen = await conn.fetch(
                "SELECT stream_id FROM remote_device_list_stream_ids WHERE user_id = $1", user_id
            )
        return ListPosition(
            head["stream_id"], head["resync_needed"], frozenset(r["stream_id"] for r in seen)
        )

    async def users_sharing_a_room_with_local_users(self, user_ids: Collection[str]) -> set[str]:
        """Of `user_ids`, those joined to a room a local user is joined to: the users whose
        updates this server receives, so whose cached lists stay current."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT c.state_key FROM current_state_events c"
            " JOIN local_current_membership l ON l.room_id = c.room_id AND l.membership = 'join'"
            " WHERE c.type = 'm.room.member' AND c.membership = 'join'"
            "   AND c.state_key = ANY($1::text[])",
            list(user_ids),
        )
        return {row["state_key"] for row in rows}

    # --- writing ----------------------------------------------------------------------------

    async def replace_device_list(
        self,
        user_id: str,
        stream_id: int | None,
        devices: Collection[RemoteDevice],
        cross_signing: Mapping[str, Mapping[str, Any]],
        now_ms: int,
    ) -> None:
        """A full answer replaces whatever was cached for `user_id`, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM remote_device_lists WHERE user_id = $1", user_id)
            await conn.execute(
                "INSERT INTO remote_device_lists (user_id, stream_id, resync_needed, updated_ts)"
                " VALUES ($1, $2, FALSE, $3)",
                user_id,
                stream_id,
                now_ms,
            )
            if stream_id is not None:
                await conn.execute(
                    "INSERT INTO remote_device_list_stream_ids (user_id, stream_id)"
                    " VALUES ($1, $2)",
                    user_id,
                    stream_id,
                )
            await conn.executemany(
                "INSERT INTO remote_device_keys (user_id, device_id, keys, display_name)"
                " VALUES ($1, $2, $3, $4)",
                [(user_id, d.device_id, _json(d.keys), d.display_name) for d in devices],
            )
            await conn.executemany(
                "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json)"
                " VALUES ($1, $2, $3)",
                [
                    (user_id, key_type, _json(key))
                    for key_type, key in cross_signing.items()
                    if key_type in SHARED_KEY_TYPES
                ],
            )

    async def apply_device_update(
        self,
        user_id: str,
        stream_id: int,
        device: RemoteDevice,
        deleted: bool,
        now_ms: int,
    ) -> None:
        """One `m.device_list_update`: the device's entry is replaced (or removed), and
        `stream_id` becomes known. Does nothing for a list that is not cached."""
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.execute(
                "UPDATE remote_device_lists SET stream_id = GREATEST(stream_id, $2),"
                " updated_ts = $3 WHERE user_id = $1",
                user_id,
                stream_id,
                now_ms,
            )
            if updated == "UPDATE 0":
                return
            await conn.execute(
                "INSERT INTO remote_device_list_stream_ids (user_id, stream_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                user_id,
                stream_id,
            )
            if deleted:
                await conn.execute(
                    "DELETE FROM remote_device_keys WHERE user_id = $1 AND device_id = $2",
                    user_id,
                    device.device_id,
                )
                return
            await conn.execute(
                "INSERT INTO remote_device_keys (user_id, device_id, keys, display_name)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id)"
                " DO UPDATE SET keys = $3, display_name = $4",
                user_id,
                device.device_id,
                _json(device.keys),
                device.display_name,
            )

    async def set_cross_signing_keys(
        self, user_id: str, keys: Mapping[str, Mapping[str, Any]], now_ms: int
    ) -> bool:
        """Replace some of a cached user's cross-signing keys (`m.signing_key_update`);
        False when the user's list is not cached."""
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.execute(
                "UPDATE remote_device_lists SET updated_ts = $2 WHERE user_id = $1",
                user_id,
                now_ms,
            )
            if updated == "UPDATE 0":
                return False
            await conn.executemany(
                "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json)"
                " VALUES ($1, $2, $3) ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = $3",
                [
                    (user_id, key_type, _json(key))
                    for key_type, key in keys.items()
                    if key_type in SHARED_KEY_TYPES
                ],
            )
        return True

    async def mark_resync_needed(self, user_id: str) -> None:
        await self.mark_users_for_resync([user_id])

    async def mark_users_for_resync(self, user_ids: Collection[str]) -> None:
        await self._pool.execute(
            "UPDATE remote_device_lists SET resync_needed = TRUE"
            " WHERE user_id = ANY($1::text[]) AND NOT resync_needed",
            list(user_ids),
        )

    async def mark_room_members_for_resync(self, room_ids: Collection[str]) -> None:
        """The cached lists of everyone joined to these rooms may have missed updates (a
        local user just joined them: we may not have shared a room with them until now)."""
        await self._pool.execute(
            "UPDATE remote_device_lists SET resync_needed = TRUE"
            " WHERE NOT resync_needed AND user_id IN (SELECT state_key FROM current_state_events"
            "   WHERE room_id = ANY($1::text[]) AND type = 'm.room.member'"
            "   AND membership = 'join')",
            list(room_ids),
        )

    async def forget(self, user_ids: Collection[str]) -> None:
        """Stop caching these users' lists (no update of theirs reaches us any more)."""
        await self._pool.execute(
            "DELETE FROM remote_device_lists WHERE user_id = ANY($1::text[])", list(user_ids)
        )
