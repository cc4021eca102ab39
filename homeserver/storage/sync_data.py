"""Per-user data around /sync: filters, account data, receipts, read positions, and the
to-device / device-list placeholders.

Tables (schema/0006_sync_data.sql): `user_filters`, `account_data`, `receipts`,
`notification_read_positions`, `device_inbox`, `device_lists_stream`, and the stream sequences.
Push rules and push actions are in homeserver/storage/push_data.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson

# account_data.room_id for global account data.
GLOBAL: Final = ""

STREAM_SEQUENCES: Final = {
    "account_data": "account_data_stream_seq",
    "receipts": "receipts_stream_seq",
    "to_device": "to_device_stream_seq",
    "device_lists": "device_lists_stream_seq",
}
_MAX_STREAM_QUERIES: Final = {
    "account_data": "SELECT max(stream_id) FROM account_data",
    "receipts": "SELECT max(stream_id) FROM receipts",
    "to_device": "SELECT max(stream_id) FROM device_inbox",
    "device_lists": "SELECT max(stream_id) FROM device_lists_stream",
}


@dataclass(frozen=True, slots=True)
class AccountDataRow:
    room_id: str  # GLOBAL for global account data
    type: str
    content: dict[str, Any]
    stream_id: int


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str  # '' when unthreaded
    event_id: str
    ts: int
    stream_id: int


class SyncDataStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # Called with (user_id, room_id, stream_ordering) after a read position may have moved
        # (PushService keeps unread counts in memory).
        self.read_position_listeners: list[Callable[[str, str, int], None]] = []

    # --- streams ----------------------------------------------------------------------------

    async def allocate_stream_ids(self, stream: str, count: int) -> list[int]:
        """`count` new positions of `stream` (one of STREAM_SEQUENCES)."""
        sequence = STREAM_SEQUENCES[stream]
        rows = await self._pool.fetch(
            f"SELECT nextval('{sequence}') AS id FROM generate_series(1, $1)", count
        )
        return sorted(row["id"] for row in rows)

    async def get_max_stream_id(self, stream: str) -> int:
        """The highest stored position of `stream`: where its tracker resumes after a restart."""
        value: int | None = await self._pool.fetchval(_MAX_STREAM_QUERIES[stream])
        return value or 0

    # --- filters ----------------------------------------------------------------------------

    async def add_filter(self, user_id: str, filter_json: dict[str, Any]) -> int:
        filter_id: int = await self._pool.fetchval(
            "INSERT INTO user_filters (user_id, filter_json) VALUES ($1, $2) RETURNING filter_id",
            user_id,
            orjson.dumps(filter_json).decode(),
        )
        return filter_id

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        text: str | None = await self._pool.fetchval(
            "SELECT filter_json FROM user_filters WHERE user_id = $1 AND filter_id = $2",
            user_id,
            filter_id,
        )
        return None if text is None else _object(text)

    # --- account data -----------------------------------------------------------------------

    async def put_account_data(
        self, user_id: str, room_id: str, data_type: str, content: dict[str, Any], stream_id: int
    ) -> None:
        await self._pool.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, type)"
            " DO UPDATE SET content = EXCLUDED.content, stream_id = EXCLUDED.stream_id",
            user_id,
            room_id,
            data_type,
            orjson.dumps(content).decode(),
            stream_id,
        )

    async def get_account_data(
        self, user_id: str, room_id: str, data_type: str
    ) -> dict[str, Any] | None:
        text: str | None = await self._pool.fetchval(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            user_id,
            room_id,
            data_type,
        )
        return None if text is None else _object(text)

    async def get_account_data_changes(
        self, user_id: str, from_id: int, to_id: int
    ) -> list[AccountDataRow]:
        """Global and room account data changed in `(from_id, to_id]` (all of it from 0)."""
        rows = await self._pool.fetch(
            "SELECT room_id, type, content, stream_id FROM account_data"
            " WHERE user_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
            user_id,
            from_id,
            to_id,
        )
        return [
            AccountDataRow(r["room_id"], r["type"], _object(r["content"]), r["stream_id"])
            for r in rows
        ]

    # --- receipts ---------------------------------------------------------------------------

    async def upsert_receipt(self, receipt: ReceiptRow, event_stream_ordering: int | None) -> None:
        await self._pool.execute(
            "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,"
            " event_stream_ordering, ts, stream_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
            " event_id = EXCLUDED.event_id, event_stream_ordering = EXCLUDED.event_stream_ordering,"
            " ts = EXCLUDED.ts, stream_id = EXCLUDED.stream_id",
            receipt.room_id,
            receipt.receipt_type,
            receipt.user_id,
            receipt.thread_id,
            receipt.event_id,
            event_stream_ordering,
            receipt.ts,
            receipt.stream_id,
        )

    async def get_receipts(
        self, room_ids: Collection[str], from_id: int, to_id: int
    ) -> list[ReceiptRow]:
        """Receipts of these rooms changed in `(from_id, to_id]`."""
        if not room_ids:
            return []
        rows = await self._pool.fetch(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id"
            " FROM receipts WHERE room_id = ANY($1::text[]) AND stream_id > $2"
            " AND stream_id <= $3 ORDER BY stream_id",
            list(room_ids),
            from_id,
            to_id,
        )
        return [ReceiptRow(**dict(r)) for r in rows]

    # --- read positions (unread counts) -----------------------------------------------------

    async def advance_read_position(
        self, user_id: str, room_id: str, thread_id: str, stream_ordering: int
    ) -> None:
        """Move the read position forward only: the receipt "more ahead" wins (C-S "Receiving
        notifications")."""
        try:
            await self._pool.execute(
                "INSERT INTO notification_read_positions (user_id, room_id, thread_id,"
                " stream_ordering) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (user_id, room_id, thread_id)"
                " DO UPDATE SET stream_ordering = GREATEST(notification_read_positions"
                ".stream_ordering, EXCLUDED.stream_ordering)",
                user_id,
                room_id,
                thread_id,
                stream_ordering,
            )
        finally:
            for listener in self.read_position_listeners:
                listener(user_id, room_id, stream_ordering)

    async def get_stream_orderings(self, event_ids: Collection[str]) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT event_id, stream_ordering FROM events WHERE event_id = ANY($1::text[])",
            list(event_ids),
        )
        return {r["event_id"]: r["stream_ordering"] for r in rows}

    # --- memberships (history visibility rule 3) -------------------------------------------

    async def get_latest_join(self, room_id: str, user_id: str) -> int | None:
        """Stream position of the user's latest join event in the room; None if never joined."""
        value: int | None = await self._pool.fetchval(
            "SELECT max(stream_ordering) FROM room_memberships"
            " WHERE room_id = $1 AND user_id = $2 AND membership = 'join'",
            room_id,
            user_id,
        )
        return value

    async def get_membership_at(self, room_id: str, user_id: str, position: int) -> str | None:
        """The user's membership as of stream `position` (None: no member event by then)."""
        membership: str | None = await self._pool.fetchval(
            "SELECT membership FROM room_memberships WHERE room_id = $1 AND user_id = $2"
            " AND stream_ordering <= $3 ORDER BY stream_ordering DESC LIMIT 1",
            room_id,
            user_id,
            position,
        )
        return membership

    async def get_last_event_id_at(self, room_id: str, position: int) -> str | None:
        """The room's newest client-visible event at or before stream `position`."""
        event_id: str | None = await self._pool.fetchval(
            "SELECT event_id FROM events WHERE room_id = $1 AND stream_ordering <= $2"
            " AND NOT outlier AND NOT soft_failed AND rejection_reason IS NULL"
            " ORDER BY stream_ordering DESC LIMIT 1",
            room_id,
            position,
        )
        return event_id

    async def get_current_members(self, room_id: str) -> list[tuple[str, str, int]]:
        """`(user_id, membership, stream_ordering)` of the room's current member events,
        oldest first (room summary heroes are "ordered by stream ordering")."""
        rows = await self._pool.fetch(
            "SELECT c.state_key, c.membership, e.stream_ordering FROM current_state_events c"
            " JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = $1 AND c.type = 'm.room.member' ORDER BY e.stream_ordering",
            room_id,
        )
        return [(r["state_key"], r["membership"] or "leave", r["stream_ordering"]) for r in rows]

    # --- placeholders for E2EE ---------------------------------------------------------------

    async def get_to_device_messages(
        self, user_id: str, device_id: str, to_id: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """`(stream_id, message)` of the device's oldest `limit` messages up to `to_id`, oldest
        first (a device has at most one message per stream position)."""
        rows = await self._pool.fetch(
            "SELECT stream_id, message FROM device_inbox WHERE user_id = $1 AND device_id = $2"
            " AND stream_id <= $3 ORDER BY stream_id LIMIT $4",
            user_id,
            device_id,
            to_id,
            limit,
        )
        return [(r["stream_id"], _object(r["message"])) for r in rows]

    async def delete_to_device_messages(self, user_id: str, device_id: str, up_to: int) -> None:
        """A /sync with `since` past these messages acknowledges them (C-S "Send-to-Device")."""
        await self._pool.execute(
            "DELETE FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3",
            user_id,
            device_id,
            up_to,
        )

    async def get_device_list_changes(
        self, user_ids: Collection[str], from_id: int, to_id: int
    ) -> set[str]:
        if not user_ids or from_id >= to_id:
            return set()
        rows = await self._pool.fetch(
            "SELECT DISTINCT user_id FROM device_lists_stream WHERE user_id = ANY($1::text[])"
            " AND stream_id > $2 AND stream_id <= $3",
            list(user_ids),
            from_id,
            to_id,
        )
        return {r["user_id"] for r in rows}


def _object(text: str) -> dict[str, Any]:
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}
