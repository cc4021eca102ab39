"""End-to-end encryption keys, the device list change stream and the to-device inbox.

Tables: `device_keys`, `one_time_keys`, `fallback_keys`, `cross_signing_keys`,
`e2e_signatures` (schema/0009_e2e_keys.sql); `device_inbox`, `device_lists_stream`
(schema/0006_sync_data.sql); `client_transactions` (0002) for send-to-device txnIds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

# (algorithm, key_id, key object or string)
KeyRow = tuple[str, str, Any]


@dataclass(frozen=True, slots=True)
class ClaimedKey:
    user_id: str
    device_id: str
    algorithm: str
    key_id: str
    key: Any


@dataclass(frozen=True, slots=True)
class SignatureRow:
    signer_user_id: str
    signer_key_id: str
    target_user_id: str
    target_key: str  # a device ID, or a cross-signing public key
    signature: str


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class E2eKeysStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- device keys ------------------------------------------------------------------------

    async def set_device_keys(self, user_id: str, device_id: str, keys: Mapping[str, Any]) -> bool:
        """Store a device's identity keys; whether they differ from what was stored."""
        text = _dumps(keys)
        previous: str | None = await self._pool.fetchval(
            "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json"
            " RETURNING (SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2)",
            user_id,
            device_id,
            text,
        )
        return previous != text

    async def get_device_keys(
        self, user_ids: Collection[str]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """`user → device → DeviceKeys` (with the device's display name under `unsigned`)."""
        rows = await self._pool.fetch(
            "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM device_keys k"
            " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
            " WHERE k.user_id = ANY($1::text[])",
            list(user_ids),
        )
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for row in rows:
            keys = orjson.loads(row["key_json"])
            if row["display_name"] is not None:
                keys.setdefault("unsigned", {})["device_display_name"] = row["display_name"]
            result.setdefault(row["user_id"], {})[row["device_id"]] = keys
        return result

    async def delete_device_keys(self, user_id: str, device_ids: Collection[str]) -> None:
        """Forget every key of deleted devices."""
        async with self._pool.acquire() as conn, conn.transaction():
            for table in ("device_keys", "one_time_keys", "fallback_keys"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE user_id = $1 AND device_id = ANY($2::text[])",
                    user_id,
                    list(device_ids),
                )

    # --- one-time and fallback keys -----------------------------------------------------------

    async def add_one_time_keys(self, user_id: str, device_id: str, keys: Iterable[KeyRow]) -> None:
        """A key ID already stored keeps its first key (a retried upload is harmless)."""
        rows = [(user_id, device_id, alg, key_id, _dumps(key)) for alg, key_id, key in keys]
        if rows:
            await self._pool.executemany(
                "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                rows,
            )

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT algorithm, count(*) AS n FROM one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
            user_id,
            device_id,
        )
        return {row["algorithm"]: row["n"] for row in rows}

    async def set_fallback_keys(self, user_id: str, device_id: str, keys: Iterable[KeyRow]) -> None:
        """One fallback key per algorithm: a new one replaces the old and is unused."""
        rows = [(user_id, device_id, alg, key_id, _dumps(key)) for alg, key_id, key in keys]
        if rows:
            await self._pool.executemany(
                "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, algorithm)"
                " DO UPDATE SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,"
                " used = (fallback_keys.used AND fallback_keys.key_id = EXCLUDED.key_id)",
                rows,
            )

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2"
            " AND NOT used ORDER BY algorithm",
            user_id,
            device_id,
        )
        return [row["algorithm"] for row in rows]

    async def claim_key(self, user_id: str, device_id: str, algorithm: str) -> ClaimedKey | None:
        """Take the oldest one-time key (deleted as it is returned; concurrent claims skip each
        other's rows), else the fallback key, marked used."""
        row = await self._pool.fetchrow(
            "DELETE FROM one_time_keys WHERE ctid = (SELECT ctid FROM one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
            " ORDER BY added LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING key_id, key_json",
            user_id,
            device_id,
            algorithm,
        )
        if row is None:
            row = await self._pool.fetchrow(
                "UPDATE fallback_keys SET used = TRUE"
                " WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
                " RETURNING key_id, key_json",
                user_id,
                device_id,
                algorithm,
            )
        if row is None:
            return None
        key = orjson.loads(row["key_json"])
        return ClaimedKey(user_id, device_id, algorithm, row["key_id"], key)

    # --- cross-signing keys and signatures ---------------------------------------------------

    async def set_cross_signing_key(
        self, user_id: str, key_type: str, key: Mapping[str, Any], stream: int
    ) -> None:
        await self._pool.execute(
            "INSERT INTO cross_signing_keys (user_id, key_type, key_json, stream)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key_type)"
            " DO UPDATE SET key_json = EXCLUDED.key_json, stream = EXCLUDED.stream",
            user_id,
            key_type,
            _dumps(key),
            stream,
        )

    async def get_cross_signing_keys(
        self, user_ids: Collection[str]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """`user → key type → CrossSigningKey`."""
        rows = await self._pool.fetch(
            "SELECT user_id, key_type, key_json FROM cross_signing_keys"
            " WHERE user_id = ANY($1::text[])",
            list(user_ids),
        )
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for row in rows:
            result.setdefault(row["user_id"], {})[row["key_type"]] = orjson.loads(row["key_json"])
        return result

    async def add_signatures(self, rows: Sequence[SignatureRow]) -> None:
        if rows:
            await self._pool.executemany(
                "INSERT INTO e2e_signatures (signer_user_id, signer_key_id, target_user_id,"
                " target_key, signature) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (target_user_id, target_key, signer_user_id, signer_key_id)"
                " DO UPDATE SET signature = EXCLUDED.signature",
                [
                    (r.signer_user_id, r.signer_key_id, r.target_user_id, r.target_key, r.signature)
                    for r in rows
                ],
            )

    async def get_signatures(self, target_user_ids: Collection[str]) -> list[SignatureRow]:
        rows = await self._pool.fetch(
            "SELECT signer_user_id, signer_key_id, target_user_id, target_key, signature"
            " FROM e2e_signatures WHERE target_user_id = ANY($1::text[])",
            list(target_user_ids),
        )
        return [SignatureRow(**dict(row)) for row in rows]

    # --- device list changes -----------------------------------------------------------------

    async def add_device_list_change(self, stream_id: int, user_id: str) -> None:
        await self._pool.execute(
            "INSERT INTO device_lists_stream (stream_id, user_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            stream_id,
            user_id,
        )

    async def get_device_list_stream_id(self, user_id: str) -> int:
        """The position of the user's newest device list change (0 if none)."""
        value: int | None = await self._pool.fetchval(
            "SELECT max(stream_id) FROM device_lists_stream WHERE user_id = $1", user_id
        )
        return value or 0

    async def get_users_sharing_rooms(self, user_id: str) -> set[str]:
        """Every user joined to a room `user_id` is joined to (the user included)."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT c.state_key FROM local_current_membership l"
            " JOIN current_state_events c ON c.room_id = l.room_id"
            " AND c.type = 'm.room.member' AND c.membership = 'join'"
            " WHERE l.user_id = $1 AND l.membership = 'join'",
            user_id,
        )
        return {row["state_key"] for row in rows} | {user_id}

    async def get_local_users_sharing_rooms(self, user_id: str) -> set[str]:
        """Local users joined to a room `user_id` is joined to (whom its key changes concern)."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT l2.user_id FROM current_state_events c"
            " JOIN local_current_membership l2 ON l2.room_id = c.room_id"
            " AND l2.membership = 'join'"
            " WHERE c.type = 'm.room.member' AND c.state_key = $1 AND c.membership = 'join'",
            user_id,
        )
        return {row["user_id"] for row in rows}

    async def get_changed_users(
        self, user_ids: Collection[str], from_id: int, to_id: int
    ) -> set[str]:
        """Of `user_ids`, those with a device list change in (from_id, to_id]."""
        if from_id >= to_id or not user_ids:
            return set()
        rows = await self._pool.fetch(
            "SELECT DISTINCT user_id FROM device_lists_stream WHERE user_id = ANY($1::text[])"
            " AND stream_id > $2 AND stream_id <= $3",
            list(user_ids),
            from_id,
            to_id,
        )
        return {row["user_id"] for row in rows}

    async def get_membership_changes(
        self, user_id: str, from_ordering: int, to_ordering: int
    ) -> list[tuple[str, str, str]]:
        """`(room_id, member, membership)` of member events in (from, to] of rooms `user_id`
        is or was in, oldest first: who started or stopped sharing a room with them."""
        rows = await self._pool.fetch(
            "SELECT m.room_id, m.user_id, m.membership FROM room_memberships m"
            " WHERE m.room_id IN (SELECT room_id FROM local_current_membership WHERE user_id = $1)"
            " AND m.stream_ordering > $2 AND m.stream_ordering <= $3 ORDER BY m.stream_ordering",
            user_id,
            from_ordering,
            to_ordering,
        )
        return [(row["room_id"], row["user_id"], row["membership"]) for row in rows]

    async def get_joined_members(self, room_ids: Collection[str]) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT DISTINCT state_key FROM current_state_events WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND membership = 'join'",
            list(room_ids),
        )
        return {row["state_key"] for row in rows}

    # --- to-device inbox ---------------------------------------------------------------------

    async def list_device_ids(self, user_id: str) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id", user_id
        )
        return [row["device_id"] for row in rows]

    async def add_to_device_messages(
        self, stream_id: int, messages: Iterable[tuple[str, str, Mapping[str, Any]]]
    ) -> None:
        """`(user_id, device_id, {"sender", "type", "content"})` rows at one stream position."""
        rows = [(user, device, stream_id, _dumps(message)) for user, device, message in messages]
        if rows:
            await self._pool.executemany(
                "INSERT INTO device_inbox (user_id, device_id, stream_id, message)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                rows,
            )

    async def delete_to_device_inbox(self, user_id: str, device_ids: Collection[str]) -> None:
        """Drop the undelivered messages of deleted devices."""
        await self._pool.execute(
            "DELETE FROM device_inbox WHERE user_id = $1 AND device_id = ANY($2::text[])",
            user_id,
            list(device_ids),
        )

    async def seen_transaction(self, user_id: str, device_key: str, kind: str, txn_id: str) -> bool:
        found = await self._pool.fetchval(
            "SELECT 1 FROM client_transactions"
            " WHERE user_id = $1 AND device_id = $2 AND kind = $3 AND txn_id = $4",
            user_id,
            device_key,
            kind,
            txn_id,
        )
        return found is not None

    async def record_transaction(
        self, user_id: str, device_key: str, kind: str, txn_id: str, now_ms: int
    ) -> bool:
        """Record a processed txnId; False if it was already recorded."""
        status: str = await self._pool.execute(
            "INSERT INTO client_transactions"
            " (user_id, device_id, kind, txn_id, response, created_ts)"
            " VALUES ($1, $2, $3, $4, '{}', $5) ON CONFLICT DO NOTHING",
            user_id,
            device_key,
            kind,
            txn_id,
            now_ms,
        )
        return status.endswith(" 1")
