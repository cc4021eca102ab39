"""Turning outliers into timeline events ("de-outliering").

S2S "Retrieving event authorization information" / "Joining Rooms": events a server holds
without knowing the state before them (the room state and auth chain received at a join, auth
events fetched to check another event) are outliers: stored, usable for auth and state, not
part of the room's timeline. When such an event later arrives as part of the room's history
(backfill, `/get_missing_events`, a transaction), the state before it is known, so it becomes
a timeline event: it gets a stream position and its state groups, like any other event.

The insert path of homeserver/storage/events.py refuses an event already stored, so an
outlier is promoted here instead, in one database transaction: new state groups, the event's
flag, position and state groups, its relations, and its membership row's position.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import asyncpg

from federation.pdu import Event
from homeserver.storage import relations as relations_tables
from homeserver.storage import state as state_tables
from homeserver.storage.state import NewStateGroup


@dataclass(frozen=True, slots=True)
class Promotion:
    """An outlier becoming a timeline event."""

    event: Event
    stream_ordering: int
    state_group_before: int
    state_group_after: int


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
        "UPDATE events e SET outlier = FALSE, stream_ordering = p.stream_ordering"
        " FROM unnest($1::text[], $2::bigint[]) AS p (event_id, stream_ordering)"
        " WHERE e.event_id = p.event_id AND e.outlier RETURNING e.event_id",
        [p.event.event_id for p in promotions],
        [p.stream_ordering for p in promotions],
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
