"""Reads behind the room-reading Client-Server endpoints: pagination in topological order,
event positions, memberships over time, relations and thread summaries.

Tables (schema/0002_rooms_events.sql): `events` (ordered by `(depth, stream_ordering)`, the
"topological key", via the `events_room_depth` index), `room_memberships`,
`current_state_events`, `event_relations`, `redactions`. Timeline reads return only events
clients may see in a timeline (not outliers, not soft-failed, not rejected); state reads
(`get_state_event_rows`) return the events a state map names, outliers included, never
rejected ones. History visibility is applied by homeserver/services/visibility.py on top.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

from homeserver.storage.event_rows import (
    EVENT_COLUMNS,
    STATE_READABLE,
    VISIBLE,
    EventRow,
    row_to_event_row,
)

Key = tuple[int, int]  # (depth, stream_ordering)
Direction = Literal["b", "f"]

# Larger than any depth or stream position (BIGINT).
KEY_MAX: Final[Key] = (2**63 - 1, 2**63 - 1)
KEY_MIN: Final[Key] = (0, 0)

_FROM_EVENTS: Final = "FROM events e JOIN rooms r ON r.room_id = e.room_id"


def _range_condition(direction: Direction, first: int) -> str:
    """Events after `from` and up to `to`, walking in `direction`; the parameters are
    `$first, $first+1` (from depth, stream) and `$first+2, $first+3` (to depth, stream).

    A key names the point right after that event (homeserver/services/tokens.py): backwards,
    `to < key <= from`; forwards, `from < key <= to`.
    """
    start, stop = f"(${first}, ${first + 1})", f"(${first + 2}, ${first + 3})"
    lo, hi = (stop, start) if direction == "b" else (start, stop)
    return f"(e.depth, e.stream_ordering) > {lo} AND (e.depth, e.stream_ordering) <= {hi}"


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """`m.thread` aggregation input for one thread root (C-S "Threading")."""

    root_id: str
    count: int
    latest_event_id: str
    participated: bool


class RoomReadsStore:
    """SQL for /messages, /context, /members, /relations, /threads and the user directory."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- positions --------------------------------------------------------------------------

    async def get_event_key(self, room_id: str, event_id: str) -> Key | None:
        """The topological key of a timeline event of this room (None: unknown or outlier)."""
        row = await self._pool.fetchrow(
            "SELECT depth, stream_ordering FROM events"
            " WHERE event_id = $1 AND room_id = $2 AND NOT outlier",
            event_id,
            room_id,
        )
        return None if row is None else (row["depth"], row["stream_ordering"])

    async def get_key_for_stream_position(self, room_id: str, position: int) -> Key:
        """The key right after every timeline event of the room with `stream_ordering` at most
        `position` (a /sync token turned into a point of the room's history)."""
        row = await self._pool.fetchrow(
            "SELECT depth, stream_ordering FROM events"
            " WHERE room_id = $1 AND stream_ordering <= $2 AND NOT outlier"
            " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            room_id,
            position,
        )
        return KEY_MIN if row is None else (row["depth"], row["stream_ordering"])

    async def get_last_event_at_or_before(self, room_id: str, key: Key) -> str | None:
        """The newest timeline event with a key ≤ `key` (whose state is the state at `key`)."""
        event_id: str | None = await self._pool.fetchval(
            "SELECT event_id FROM events e"
            " WHERE room_id = $1 AND (depth, stream_ordering) <= ($2, $3)"
            f" AND {VISIBLE} ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            room_id,
            *key,
        )
        return event_id

    # --- pagination -------------------------------------------------------------------------

    async def paginate(
        self,
        room_id: str,
        direction: Direction,
        from_key: Key,
        to_key: Key,
        limit: int,
    ) -> list[EventRow]:
        """Up to `limit` client-visible events between `from_key` and `to_key`, in topological
        order: newest first going backwards (`b`), oldest first going forwards (`f`)."""
        order = "DESC" if direction == "b" else "ASC"
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} {_FROM_EVENTS}"
            f" WHERE e.room_id = $1 AND {_range_condition(direction, 2)} AND {VISIBLE}"
            f" ORDER BY e.depth {order}, e.stream_ordering {order} LIMIT $6",
            room_id,
            *from_key,
            *to_key,
            limit,
        )
        return [row_to_event_row(row) for row in rows]

    async def get_event_row(self, room_id: str, event_id: str) -> EventRow | None:
        """A client-visible event of this room (None: unknown, outlier, rejected …)."""
        row = await self._pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} {_FROM_EVENTS}"
            f" WHERE e.event_id = $1 AND e.room_id = $2 AND {VISIBLE}",
            event_id,
            room_id,
        )
        return None if row is None else row_to_event_row(row)

    async def get_event_rows(self, event_ids: Collection[str]) -> dict[str, EventRow]:
        """Timeline events clients may see, by ID (others, outliers included, are absent)."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} {_FROM_EVENTS}"
            f" WHERE e.event_id = ANY($1::text[]) AND {VISIBLE}",
            list(event_ids),
        )
        return {row["event_id"]: row_to_event_row(row) for row in rows}

    async def get_state_event_rows(self, state_event_ids: Collection[str]) -> dict[str, EventRow]:
        """Events named by a room state (current state or the state at an event), by ID:
        outliers included, since a room joined over federation has its state stored as
        outliers; rejected events are absent. Never use it for timeline events."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} {_FROM_EVENTS}"
            f" WHERE e.event_id = ANY($1::text[]) AND {STATE_READABLE}",
            list(state_event_ids),
        )
        return {row["event_id"]: row_to_event_row(row) for row in rows}

    # --- memberships ------------------------------------------------------------------------

    async def get_current_membership(self, room_id: str, user_id: str) -> tuple[str, str] | None:
        """`(membership, event_id)` of the user's current m.room.member, if any."""
        row = await self._pool.fetchrow(
            "SELECT membership, event_id FROM current_state_events"
            " WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2",
            room_id,
            user_id,
        )
        return None if row is None else (row["membership"], row["event_id"])

    async def get_latest_join_keys(self, room_ids: Collection[str], user_id: str) -> dict[str, Key]:
        """`room_id → key` of the user's newest `join` membership event in each room (the
        "joined at any point after the event" test of C-S "Room History Visibility")."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT ON (m.room_id) m.room_id, e.depth, e.stream_ordering"
            " FROM room_memberships m JOIN events e ON e.event_id = m.event_id"
            " WHERE m.room_id = ANY($1::text[]) AND m.user_id = $2 AND m.membership = 'join'"
            f" AND {VISIBLE} ORDER BY m.room_id, e.depth DESC, e.stream_ordering DESC",
            list(room_ids),
            user_id,
        )
        return {row["room_id"]: (row["depth"], row["stream_ordering"]) for row in rows}

    # --- relations --------------------------------------------------------------------------

    async def get_relation_children(
        self,
        room_id: str,
        parent_id: str,
        *,
        relation_type: str | None,
        event_type: str | None,
        max_level: int,
        direction: Direction,
        from_key: Key,
        to_key: Key,
        limit: int,
    ) -> list[EventRow]:
        """Events relating to `parent_id` (directly, or through up to `max_level` relations
        that each match the filters: C-S "Relationships API"), in topological order."""
        order = "DESC" if direction == "b" else "ASC"
        rows = await self._pool.fetch(
            f"""
            WITH RECURSIVE related (event_id, level) AS (
                SELECT rel.event_id, 1 FROM event_relations rel
                JOIN events e ON e.event_id = rel.event_id
                WHERE rel.relates_to_id = $2 AND e.room_id = $1
                  AND ($3::text IS NULL OR rel.relation_type = $3)
                  AND ($4::text IS NULL OR e.type = $4)
                UNION
                SELECT rel.event_id, related.level + 1 FROM event_relations rel
                JOIN related ON rel.relates_to_id = related.event_id
                JOIN events e ON e.event_id = rel.event_id
                WHERE related.level < $5 AND e.room_id = $1
                  AND ($3::text IS NULL OR rel.relation_type = $3)
                  AND ($4::text IS NULL OR e.type = $4)
            )
            SELECT {EVENT_COLUMNS} FROM (SELECT DISTINCT event_id FROM related) AS d
            JOIN events e ON e.event_id = d.event_id JOIN rooms r ON r.room_id = e.room_id
            WHERE {VISIBLE} AND {_range_condition(direction, 6)}
            ORDER BY e.depth {order}, e.stream_ordering {order} LIMIT $10
            """,
            room_id,
            parent_id,
            relation_type,
            event_type,
            max_level,
            *from_key,
            *to_key,
            limit,
        )
        return [row_to_event_row(row) for row in rows]

    async def get_latest_edits(self, parents: Sequence[tuple[str, str, str]]) -> dict[str, str]:
        """`parent → newest valid m.replace` for `(parent_id, sender, type)` triples.

        C-S "Event replacements": a replacement has the original's sender and type, is not a
        state event and is itself not redacted; the newest is the largest
        `(origin_server_ts, event_id)`.
        """
        if not parents:
            return {}
        rows = await self._pool.fetch(
            f"""
            SELECT DISTINCT ON (rel.relates_to_id) rel.relates_to_id, e.event_id
            FROM unnest($1::text[], $2::text[], $3::text[]) AS p(parent_id, sender, type)
            JOIN event_relations rel ON rel.relates_to_id = p.parent_id
            JOIN events e ON e.event_id = rel.event_id
            WHERE rel.relation_type = 'm.replace' AND e.sender = p.sender AND e.type = p.type
              AND e.state_key IS NULL AND e.redacted_because IS NULL AND {VISIBLE}
            ORDER BY rel.relates_to_id, e.origin_server_ts DESC, e.event_id DESC
            """,
            [p[0] for p in parents],
            [p[1] for p in parents],
            [p[2] for p in parents],
        )
        return {row["relates_to_id"]: row["event_id"] for row in rows}

    async def get_thread_summaries(
        self, parent_ids: Collection[str], user_id: str
    ) -> dict[str, ThreadSummary]:
        """`m.thread` counts, newest event (topologically) and whether `user_id` sent any of
        them, for the thread roots among `parent_ids`."""
        rows = await self._pool.fetch(
            f"""
            SELECT DISTINCT ON (rel.relates_to_id) rel.relates_to_id,
                   count(*) OVER w AS count,
                   bool_or(e.sender = $2) OVER w AS participated,
                   e.event_id AS latest_event_id
            FROM event_relations rel JOIN events e ON e.event_id = rel.event_id
            WHERE rel.relates_to_id = ANY($1::text[]) AND rel.relation_type = 'm.thread'
              AND e.redacted_because IS NULL AND {VISIBLE}
            WINDOW w AS (PARTITION BY rel.relates_to_id)
            ORDER BY rel.relates_to_id, e.depth DESC, e.stream_ordering DESC
            """,
            list(parent_ids),
            user_id,
        )
        return {
            row["relates_to_id"]: ThreadSummary(
                row["relates_to_id"], row["count"], row["latest_event_id"], row["participated"]
            )
            for row in rows
        }

    async def get_references(self, parent_ids: Collection[str]) -> dict[str, list[str]]:
        """`parent → [child event IDs]` of `m.reference` relations, oldest first."""
        rows = await self._pool.fetch(
            f"""
            SELECT rel.relates_to_id, e.event_id FROM event_relations rel
            JOIN events e ON e.event_id = rel.event_id
            WHERE rel.relates_to_id = ANY($1::text[]) AND rel.relation_type = 'm.reference'
              AND e.redacted_because IS NULL AND {VISIBLE}
            ORDER BY e.depth, e.stream_ordering
            """,
            list(parent_ids),
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["relates_to_id"], []).append(row["event_id"])
        return found

    async def get_thread_roots(
        self,
        room_id: str,
        *,
        participant: str | None,
        before_key: Key,
        limit: int,
    ) -> list[tuple[str, Key]]:
        """Thread roots of the room with their latest activity key, most recently active first,
        only those whose latest activity is before `before_key` (C-S `GET /threads`).
        With `participant`, only threads they started or replied in."""
        rows = await self._pool.fetch(
            f"""
            SELECT root.event_id, t.depth, t.stream_ordering FROM (
                SELECT DISTINCT ON (rel.relates_to_id) rel.relates_to_id AS root_id,
                       e.depth, e.stream_ordering,
                       bool_or(e.sender = $2) OVER (PARTITION BY rel.relates_to_id) AS replied
                FROM event_relations rel JOIN events e ON e.event_id = rel.event_id
                WHERE e.room_id = $1 AND rel.relation_type = 'm.thread'
                  AND e.redacted_because IS NULL AND {VISIBLE}
                ORDER BY rel.relates_to_id, e.depth DESC, e.stream_ordering DESC
            ) AS t
            JOIN events root ON root.event_id = t.root_id AND root.room_id = $1
            WHERE (t.depth, t.stream_ordering) < ($3, $4)
              AND ($2::text IS NULL OR t.replied OR root.sender = $2)
              AND NOT root.outlier AND NOT root.soft_failed AND root.rejection_reason IS NULL
            ORDER BY t.depth DESC, t.stream_ordering DESC LIMIT $5
            """,
            room_id,
            participant,
            *before_key,
            limit,
        )
        return [(row["event_id"], (row["depth"], row["stream_ordering"])) for row in rows]
