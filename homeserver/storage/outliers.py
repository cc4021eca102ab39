"""Turning outliers into timeline events ("de-outliering").

S2S "Retrieving event authorization information" / "Joining Rooms": events a server holds
without knowing the state before them (the room state and auth chain received at a join, auth
events fetched to check another event) are outliers: stored, usable for auth and state, not
part of the room's timeline. When such an event later arrives as part of the room's history
(backfill, `/get_missing_events`, a transaction), the state before it is known, so it becomes
a timeline event: it gets a stream position and its state groups, like any other event.

The insert path of homeserver/storage/events.py refuses an event already stored, so an
outlier is promoted here instead, in one database transaction: new state groups, the event's
flag, position and state groups, its relations, and its membership row's position. One that
arrives as a new event of the room (`/send`, `/get_missing_events`) may also move the room's
forward extremities and current state (`promote_to_timeline`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import asyncpg

from federation.pdu import Event
from homeserver.storage import relations as relations_tables
from homeserver.storage import rooms as rooms_tables
from homeserver.storage import state as state_tables
from homeserver.storage.state import NewStateGroup


@dataclass(frozen=True, slots=True)
class Promotion:
    """An outlier becoming a timeline event."""

    event: Event
    stream_ordering: int
    state_group_before: int
    state_group_after: int
    # S2S "Soft failure": part of the DAG, never shown to clients nor made an extremity.
    soft_failed: bool = False


@dataclass(frozen=True, slots=True)
class RoomAdvance:
    """How a promoted event moves the room on (GUIDE.md: forward extremities, current state)."""

    extremities_removed: Collection[str]
    extremities_added: Collection[str]
    current_state: rooms_tables.CurrentStateDelta


class OutlierStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_outliers(self, event_ids: Collection[str]) -> set[str]:
        """Which of these events are stored as outliers."""
        return await _ids_where(self._pool, event_ids, "outlier")

    async def get_timeline_events(self, event_ids: Collection[str]) -> set[str]:
        """Which of these events are stored as timeline events (not outliers; rejected and
        soft-failed ones included: they are in the room's DAG)."""
        return await _ids_where(self._pool, event_ids, "NOT outlier")

    async def promote_outliers(
        self, promotions: Sequence[Promotion], groups: Sequence[NewStateGroup]
    ) -> list[str]:
        """Make these outliers timeline events, writing `groups` (their new state groups)
        first, all in one transaction; the IDs promoted (one promoted meanwhile is left
        alone)."""
        if not promotions:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            return await _promote(conn, promotions, groups)

    async def promote_to_timeline(
        self,
        promotion: Promotion,
        groups: Sequence[NewStateGroup],
        advance: RoomAdvance | None,
        server_name: str,
    ) -> bool:
        """`promote_outliers` for one event received as a new event of its room, with the
        room's extremities and current state moved by `advance`, in the same transaction.
        False (nothing written) if it is no longer an outlier."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await _promote(conn, [promotion], groups):
                return False
            if advance is not None:
                room_id = promotion.event.room_id
                await rooms_tables.update_forward_extremities(
                    conn, room_id, advance.extremities_removed, advance.extremities_added
                )
                if advance.current_state:
                    await rooms_tables.update_current_state(
                        conn, room_id, advance.current_state, server_name
                    )
            return True


async def _ids_where(pool: asyncpg.Pool, event_ids: Collection[str], condition: str) -> set[str]:
    rows = await pool.fetch(
        f"SELECT event_id FROM events WHERE event_id = ANY($1::text[]) AND {condition}",
        list(event_ids),
    )
    return {row["event_id"] for row in rows}


async def _promote(
    conn: asyncpg.Connection, promotions: Sequence[Promotion], groups: Sequence[NewStateGroup]
) -> list[str]:
    await state_tables.insert_state_groups(conn, groups)
    promoted = await conn.fetch(
        "UPDATE events e SET outlier = FALSE, stream_ordering = p.stream_ordering,"
        " soft_failed = p.soft_failed"
        " FROM unnest($1::text[], $2::bigint[], $3::boolean[])"
        " AS p (event_id, stream_ordering, soft_failed)"
        " WHERE e.event_id = p.event_id AND e.outlier RETURNING e.event_id",
        [p.event.event_id for p in promotions],
        [p.stream_ordering for p in promotions],
        [p.soft_failed for p in promotions],
    )
    done = {row["event_id"] for row in promoted}
    chosen = [p for p in promotions if p.event.event_id in done]
    await conn.executemany(
        "INSERT INTO event_state_groups (event_id, state_group, state_group_before)"
        " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(p.event.event_id, p.state_group_after, p.state_group_before) for p in chosen],
    )
    await conn.executemany(
        "UPDATE room_memberships SET stream_ordering = $2 WHERE event_id = $1",
        [(p.event.event_id, p.stream_ordering) for p in chosen if p.event.state_key],
    )
    await relations_tables.insert_relations(conn, [p.event for p in chosen])
    return [p.event.event_id for p in chosen]
