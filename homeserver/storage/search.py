"""Full-text search of room events (C-S "Server Side Search").

The searchable text is the expression index `events_search` over `events`
(schema/0017_key_backup_search_openid.sql): `event_search_vector(type, json)` picks
content.body of m.room.message, content.name of m.room.name and content.topic of m.room.topic.
Queries repeat that exact expression (and the index's type predicate, as literals) so that
PostgreSQL can use the index.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from homeserver.storage.event_rows import EVENT_COLUMNS, VISIBLE, EventRow, row_to_event_row
from homeserver.storage.users import Executor

# C-S "room_events": the searchable key of each searchable event type.
SEARCH_KEYS: Final = {
    "content.body": "m.room.message",
    "content.name": "m.room.name",
    "content.topic": "m.room.topic",
}
OrderBy = Literal["rank", "recent"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    row: EventRow
    rank: float
    # How many events matched in all (before history visibility), for `count`.
    total: int


async def rooms_ever_joined(db: Executor, user_id: str) -> list[str]:
    """Rooms the user has been joined to at some point, left ones included (C-S "Server Side
    Search": "all rooms that the user has been in")."""
    rows = await db.fetch(
        "SELECT DISTINCT room_id FROM room_memberships WHERE user_id = $1 AND membership = 'join'",
        user_id,
    )
    return [row["room_id"] for row in rows]


def _types_condition(keys: Collection[str]) -> str:
    """`e.type IN (...)` with literals from SEARCH_KEYS only (never client text), so that the
    planner sees it implies the partial index's predicate."""
    types = sorted({SEARCH_KEYS[key] for key in keys})
    return "e.type IN (" + ", ".join(f"'{event_type}'" for event_type in types) + ")"


async def search_events(
    db: Executor,
    *,
    room_ids: Sequence[str],
    keys: Collection[str],
    query: str,
    order_by: OrderBy,
    before_stream: int | None,
    offset: int,
    limit: int,
) -> list[SearchHit]:
    """Matching events, best (`rank`) or newest (`recent`) first; `query` is to_tsquery text.

    Pages continue below `before_stream` (recent) or after `offset` rows (rank)."""
    order = "rank DESC, e.stream_ordering DESC" if order_by == "rank" else "e.stream_ordering DESC"
    rows = await db.fetch(
        f"""
        SELECT {EVENT_COLUMNS}, ts_rank(event_search_vector(e.type, e.json), q) AS rank,
               COUNT(*) OVER () AS total
        FROM events e JOIN rooms r ON r.room_id = e.room_id,
             to_tsquery('english', $2) AS q
        WHERE e.room_id = ANY($1::text[]) AND {_types_condition(keys)}
          AND event_search_vector(e.type, e.json) @@ q
          AND {VISIBLE} AND e.redacted_because IS NULL
          AND ($3::bigint IS NULL OR e.stream_ordering < $3)
        ORDER BY {order}
        LIMIT $4 OFFSET $5
        """,
        list(room_ids),
        query,
        before_stream,
        limit,
        offset,
    )
    return [
        SearchHit(row=row_to_event_row(row), rank=float(row["rank"]), total=int(row["total"]))
        for row in rows
    ]
