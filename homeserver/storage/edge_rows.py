"""The DAG's edges of a batch of events, as the column arrays the persist statement unnests.

Tables (schema/0002_rooms_events.sql): `event_edges` (prev events) and `event_auth_edges`
(auth events). `INSERT … SELECT … FROM unnest(…)` sends every row of a table at once, which
costs PostgreSQL a fraction of one INSERT per row: a remote join writes about four edges per
state event (S2S "Joining Rooms": thousands of state events). The statement is
homeserver/storage/persist_rows.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.event_rows import EventToPersist


@dataclass(frozen=True, slots=True)
class EdgeArrays:
    """`prev_from[i] → prev_to[i]` and `auth_from[i] → auth_to[i]`, one entry per edge."""

    prev_from: list[str]
    prev_to: list[str]
    auth_from: list[str]
    auth_to: list[str]


def edge_arrays(events: Sequence[EventToPersist]) -> EdgeArrays:
    """Each event's prev_events and auth_events edges (the statement ignores repeats)."""
    prev_from: list[str] = []
    prev_to: list[str] = []
    auth_from: list[str] = []
    auth_to: list[str] = []
    for p in events:
        event_id = p.event.event_id
        for prev in p.event.prev_event_ids:
            prev_from.append(event_id)
            prev_to.append(prev)
        for auth in p.event.auth_event_ids:
            auth_from.append(event_id)
            auth_to.append(auth)
    return EdgeArrays(prev_from, prev_to, auth_from, auth_to)
