"""Reads behind the legacy and lookup endpoints: `GET /events` (events by stream position),
`GET /events/{eventId}` (an event's room) and `GET /v1/rooms/{roomId}/timestamp_to_event`.

Tables (schema/0002_rooms_events.sql): `events`, through the indexes `events_room_stream`
`(room_id, stream_ordering)` and `events_room_origin_ts` `(room_id, origin_server_ts)`
(schema/0016_reports_and_timestamps.sql). Only events clients may see in a timeline are
returned (`VISIBLE`); history visibility is applied by the callers.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

import asyncpg

from homeserver.storage.event_rows import EVENT_COLUMNS, VISIBLE, EventRow, row_to_event_row

_FROM_EVENTS = "FROM events e JOIN rooms r ON r.room_id = e.room_id"


class LegacyReadsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_stream_events(
        self,
        room_ids: Collection[str],
        user_id: str | None,
        from_position: int,
        to_position: int,
        limit: int,
    ) -> list[EventRow]:
        """Up to `limit` events with `from_position < stream_ordering <= to_position`, oldest
        first: those of `room_ids`, and (with `user_id`) that user's membership events in any
        room (an invite or a kick reaches them from a room they are not joined to)."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} {_FROM_EVENTS}"
            " WHERE e.stream_ordering > $3 AND e.stream_ordering <= $4"
            " AND (e.room_id = ANY($1::text[])"
            "      OR ($2::text IS NOT NULL AND e.type = 'm.room.member' AND e.state_key = $2))"
            f" AND {VISIBLE} ORDER BY e.stream_ordering LIMIT $5",
            list(room_ids),
            user_id,
            from_position,
            to_position,
            limit,
        )
        return [row_to_event_row(row) for row in rows]

    async def get_event_room(self, event_id: str) -> str | None:
        """The room of a timeline event (None: unknown, or not for clients)."""
        room_id: str | None = await self._pool.fetchval(
            f"SELECT e.room_id FROM events e WHERE e.event_id = $1 AND {VISIBLE}", event_id
        )
        return room_id

    async def get_events_near_timestamp(
        self, room_id: str, ts: int, direction: Literal["b", "f"], limit: int, after: int = 0
    ) -> list[EventRow]:
        """The room's events closest to `ts`: from `ts` onwards, oldest first (`f`), or up to
        `ts`, newest first (`b`); ties in order of the stream. `after` skips that many (the
        next batch when the first ones were not visible to the user)."""
        if direction == "f":
            condition, order = "e.origin_server_ts >= $2", "ASC"
        else:
            condition, order = "e.origin_server_ts <= $2", "DESC"
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} {_FROM_EVENTS}"
            f" WHERE e.room_id = $1 AND {condition} AND {VISIBLE}"
            f" ORDER BY e.origin_server_ts {order}, e.stream_ordering {order}"
            " LIMIT $3 OFFSET $4",
            room_id,
            ts,
            limit,
            after,
        )
        return [row_to_event_row(row) for row in rows]
