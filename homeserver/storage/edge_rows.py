"""The DAG's edges of a batch of events, one statement per table.

Tables (schema/0002_rooms_events.sql): `event_edges` (prev events) and `event_auth_edges`
(auth events). `INSERT … SELECT … FROM unnest(…)` sends every row of a table in one statement,
which costs PostgreSQL a fraction of one INSERT per row: a remote join writes about four edges
per state event (S2S "Joining Rooms": thousands of state events).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from homeserver.storage.event_rows import EventToPersist


async def insert_edges(conn: asyncpg.Connection, events: Sequence[EventToPersist]) -> None:
    """Each event's prev_events and auth_events edges (repeats are ignored)."""
    prev_from = [p.event.event_id for p in events for _ in p.event.prev_event_ids]
    prev_to = [prev for p in events for prev in p.event.prev_event_ids]
    if prev_from:
        await conn.execute(
            "INSERT INTO event_edges (event_id, prev_event_id)"
            " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            prev_from,
            prev_to,
        )
    auth_from = [p.event.event_id for p in events for _ in p.event.auth_event_ids]
    auth_to = [auth for p in events for auth in p.event.auth_event_ids]
    if auth_from:
        await conn.execute(
            "INSERT INTO event_auth_edges (event_id, auth_event_id)"
            " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            auth_from,
            auth_to,
        )
