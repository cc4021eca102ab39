"""Redactions and relations between events: written inside the persist transaction.

Tables (schema/0002_rooms_events.sql): `redactions`, `event_relations`. The reads live in
`EventsStore` (homeserver/storage/events.py), which serves them as stored events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import asyncpg

from federation.pdu import Event

REDACTION: Final = "m.room.redaction"


def relation_of(event: Event) -> tuple[str, str, str | None] | None:
    """`(relates_to_id, rel_type, aggregation key)` from `content["m.relates_to"]`
    (C-S "Forming relationships between events"); None if absent or malformed."""
    relates_to = event.content.get("m.relates_to")
    if not isinstance(relates_to, Mapping):
        return None
    parent, rel_type = relates_to.get("event_id"), relates_to.get("rel_type")
    if not isinstance(parent, str) or not isinstance(rel_type, str):
        return None
    key = relates_to.get("key") if rel_type == "m.annotation" else None
    return parent, rel_type, key if isinstance(key, str) else None


async def insert_redactions(
    conn: asyncpg.Connection, accepted: Sequence[Event], applied: Mapping[str, str]
) -> None:
    """Record accepted m.room.redaction events; mark the targets in `applied`
    (`target → redaction`) as redacted (C-S "Redactions")."""
    rows = [(e.event_id, e.redacts) for e in accepted if e.type == REDACTION and e.redacts]
    if rows:
        await conn.executemany(
            "INSERT INTO redactions (event_id, redacts) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            rows,
        )
    if applied:
        await conn.executemany(
            "UPDATE events SET redacted_because = $2"
            " WHERE event_id = $1 AND redacted_because IS NULL",
            list(applied.items()),
        )


async def insert_relations(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Record `m.relates_to` of accepted timeline events (/relations, threads, annotations)."""
    rows = [(e.event_id, *rel) for e in events if (rel := relation_of(e)) is not None]
    if rows:
        await conn.executemany(
            "INSERT INTO event_relations (event_id, relates_to_id, relation_type, aggregation_key)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rows,
        )
