"""Events and the DAG: the one persist transaction every event ends in, and event reads.

Tables (schema/0002_rooms_events.sql): `events`, `event_edges`, `event_auth_edges`; `persist`
also writes the state tables (storage/state.py), the room tables (storage/rooms.py) and
redactions and relations (storage/relations.py) in the same transaction, so a crash leaves
either all of an event batch or none of it. The row types and the PDU codec are
homeserver/storage/event_rows.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import Final, Literal

import asyncpg

from federation.pdu import Event
from homeserver.storage import relations as relations_tables
from homeserver.storage import rooms as rooms_tables
from homeserver.storage import state as state_tables
from homeserver.storage.event_rows import (
    EVENT_COLUMNS,
    VISIBLE,
    EventRow,
    PersistBatch,
    row_to_event_row,
)

# Re-exported for homeserver/storage/federation_outbound.py (edited elsewhere right now); new
# code imports it from homeserver.storage.event_rows.
from homeserver.storage.event_rows import decode_pdu as decode_pdu
from homeserver.storage.persist_rows import TransactionIdTaken, execute_persist_core

MEMBER: Final = "m.room.member"
REDACTION: Final = "m.room.redaction"
# Stream positions fetched from the sequence at once.
POSITION_BLOCK: Final = 100

__all__ = ["EventsStore", "TransactionIdTaken", "decode_pdu"]


class EventsStore:
    """The persist transaction and event reads."""

    def __init__(self, pool: asyncpg.Pool, server_name: str) -> None:
        self._pool = pool
        self._server_name = server_name
        # Stream positions taken from the sequence ahead of need, lowest first.
        self._positions: list[int] = []
        self._refill = asyncio.Lock()

    # --- allocation and the persist transaction -------------------------------------------

    async def allocate_ids(self, positions: int, state_groups: int) -> tuple[list[int], list[int]]:
        """Stream positions and state group IDs for one batch, in one round trip."""
        row = await self._pool.fetchrow(
            "SELECT ARRAY(SELECT nextval('events_stream_seq') FROM generate_series(1, $1)) AS p,"
            " ARRAY(SELECT nextval(pg_get_serial_sequence('state_groups', 'state_group'))"
            "       FROM generate_series(1, $2)) AS g",
            positions,
            state_groups,
        )
        assert row is not None
        return sorted(row["p"]), sorted(row["g"])

    async def allocate_stream_positions(self, count: int) -> list[int]:
        """`count` new stream positions, each above every one handed out before.

        They come from `events_stream_seq` in blocks of at least `POSITION_BLOCK`, so most
        batches take theirs without a round trip. Positions never used (a failed transaction,
        a restart with part of a block left) are gaps, which readers never notice
        (homeserver/services/streams.py). This process is the sequence's only user.
        """
        while len(self._positions) < count:  # others may take some during the refill
            async with self._refill:  # one refill at a time keeps the handed-out order
                missing = count - len(self._positions)
                if missing > 0:
                    fetched, _ = await self.allocate_ids(max(missing, POSITION_BLOCK), 0)
                    self._positions.extend(fetched)
        taken = self._positions[:count]
        del self._positions[:count]
        return taken

    async def allocate_backfill_positions(self, count: int) -> list[int]:
        """Negative stream positions for backfilled events (schema/0010_backfill.sql), most
        negative first: the caller gives them to the events oldest first."""
        row = await self._pool.fetchrow(
            "SELECT ARRAY(SELECT nextval('events_backfill_stream_seq')"
            " FROM generate_series(1, $1)) AS p",
            count,
        )
        assert row is not None
        return sorted(row["p"])

    async def persist(self, batch: PersistBatch) -> None:
        """Write a batch of events of one room and everything they change, atomically.

        A batch that changes nothing but the tables of the core statement (plain messages:
        no state, membership, redaction or relation) is one statement, one round trip
        (homeserver/storage/persist_rows.py); anything else is one transaction around it.
        Raises `TransactionIdTaken` (nothing written) when a client transaction ID of the
        batch is already stored.
        """
        accepted = [p for p in batch.events if p.rejection_reason is None]
        memberships = [
            (e.event_id, e.room_id, e.state_key, e.sender, e.membership, p.stream_ordering)
            for p in accepted
            if (e := p.event).type == MEMBER
            and e.state_key is not None
            and e.membership is not None
        ]
        out_of_band = [
            (e.room_id, e.state_key, e.membership, e.event_id, p.stream_ordering)
            for p in accepted
            if p.out_of_band_membership
            and (e := p.event).state_key is not None
            and e.membership is not None
        ]
        timeline = [p.event for p in accepted if not p.outlier]
        plain = not (
            batch.new_room is not None
            or batch.state_groups
            or batch.current_state
            or batch.redactions_applied
            or memberships
            or out_of_band
            or any(p.event.type == REDACTION for p in accepted)
            or any(relations_tables.relation_of(e) is not None for e in timeline)
        )
        if plain:
            await execute_persist_core(self._pool, batch)
            return
        async with self._pool.acquire() as conn, conn.transaction():
            if batch.new_room is not None:
                await rooms_tables.insert_room(conn, batch.new_room)
            await state_tables.insert_state_groups(conn, batch.state_groups)
            await execute_persist_core(conn, batch)
            await rooms_tables.insert_memberships(conn, memberships)
            await relations_tables.insert_redactions(
                conn, [p.event for p in accepted], batch.redactions_applied
            )
            await relations_tables.insert_relations(conn, timeline)
            await rooms_tables.set_out_of_band_memberships(conn, out_of_band)
            if batch.current_state:
                await rooms_tables.update_current_state(
                    conn, batch.room_id, batch.current_state, self._server_name
                )

    # --- reads ----------------------------------------------------------------------------

    async def get_max_stream_ordering(self) -> int:
        """The highest persisted stream position (0 for an empty server): where tokens resume
        after a restart."""
        value: int | None = await self._pool.fetchval("SELECT max(stream_ordering) FROM events")
        return max(value or 0, 0)  # backfilled events have negative positions

    async def get_event_rows(self, event_ids: Iterable[str]) -> dict[str, EventRow]:
        """Stored events by ID (unknown IDs are absent)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id"
            " WHERE e.event_id = ANY($1::text[])",
            ids,
        )
        return {row["event_id"]: row_to_event_row(row) for row in rows}

    async def get_stream_orderings(self, event_ids: Iterable[str]) -> dict[str, int]:
        """`event_id → stream position` of the stored ones among these events."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        rows = await self._pool.fetch(
            "SELECT event_id, stream_ordering FROM events WHERE event_id = ANY($1::text[])", ids
        )
        return {row["event_id"]: row["stream_ordering"] for row in rows}

    async def get_rejection_flags(self, event_ids: Iterable[str]) -> dict[str, bool]:
        """`event_id → whether it was rejected` for the stored ones among these events."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        rows = await self._pool.fetch(
            "SELECT event_id, rejection_reason IS NOT NULL AS rejected FROM events"
            " WHERE event_id = ANY($1::text[])",
            ids,
        )
        return {row["event_id"]: row["rejected"] for row in rows}

    async def have_events(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these events are stored (accepted or rejected)."""
        rows = await self._pool.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1::text[])", list(event_ids)
        )
        return {row["event_id"] for row in rows}

    async def get_earliest_timeline_event(self, room_id: str) -> Event | None:
        """The room's oldest event in the timeline (not an outlier; rejected and soft-failed
        ones count: they are in the DAG) by `(depth, stream_ordering)`: where backfill
        continues from."""
        row = await self._pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id"
            " WHERE e.room_id = $1 AND NOT e.outlier"
            " ORDER BY e.depth, e.stream_ordering LIMIT 1",
            room_id,
        )
        return None if row is None else row_to_event_row(row).event

    async def get_room_events_in_range(
        self, room_id: str, from_position: int, to_position: int, limit: int
    ) -> list[EventRow]:
        """Client-visible events with `from_position < stream_ordering <= to_position`, the
        newest `limit` of them, oldest first (/sync timelines)."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE e.room_id = $1 AND e.stream_ordering > $2 AND e.stream_ordering <= $3"
            f" AND {VISIBLE} ORDER BY e.stream_ordering DESC LIMIT $4",
            room_id,
            from_position,
            to_position,
            limit,
        )
        return [row_to_event_row(row) for row in reversed(rows)]

    async def paginate_room_events(
        self,
        room_id: str,
        from_key: tuple[int, int] | None,
        direction: Literal["b", "f"],
        limit: int,
    ) -> list[EventRow]:
        """Client-visible events in topological order `(depth, stream_ordering)` strictly
        before (`b`, newest first) or after (`f`, oldest first) `from_key` (/messages)."""
        if direction == "b":
            condition, order = "(e.depth, e.stream_ordering) < ($2, $3)", "DESC"
            default = (2**63 - 1, 2**63 - 1)
        else:
            condition, order = "(e.depth, e.stream_ordering) > ($2, $3)", "ASC"
            default = (-1, -1)
        depth, stream = from_key if from_key is not None else default
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events e"
            f" JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE e.room_id = $1 AND {condition} AND {VISIBLE}"
            f" ORDER BY e.depth {order}, e.stream_ordering {order} LIMIT $4",
            room_id,
            depth,
            stream,
            limit,
        )
        return [row_to_event_row(row) for row in rows]

    async def get_auth_chain_ids(self, event_ids: Collection[str]) -> set[str]:
        """The auth chain of these events: their auth events, recursively (S2S "Auth chain")."""
        rows = await self._pool.fetch(
            """
            WITH RECURSIVE chain (event_id) AS (
                SELECT auth_event_id FROM event_auth_edges WHERE event_id = ANY($1::text[])
                UNION
                SELECT a.auth_event_id FROM event_auth_edges a JOIN chain c USING (event_id)
            )
            SELECT event_id FROM chain
            """,
            list(event_ids),
        )
        return {row["event_id"] for row in rows}

    async def get_relations(
        self, parent_id: str, relation_type: str | None, limit: int
    ) -> list[EventRow]:
        """Client-visible events relating to `parent_id`, newest first (/relations)."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM event_relations rel"
            f" JOIN events e ON e.event_id = rel.event_id JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE rel.relates_to_id = $1 AND ($2::text IS NULL OR rel.relation_type = $2)"
            f" AND {VISIBLE} ORDER BY e.stream_ordering DESC LIMIT $3",
            parent_id,
            relation_type,
            limit,
        )
        return [row_to_event_row(row) for row in rows]

    async def get_pending_redactions(self, target_ids: Collection[str]) -> dict[str, str]:
        """`target → redaction` for stored redactions naming these (newly arriving) events."""
        rows = await self._pool.fetch(
            "SELECT redacts, min(event_id) AS event_id FROM redactions"
            " WHERE redacts = ANY($1::text[]) GROUP BY redacts",
            list(target_ids),
        )
        return {row["redacts"]: row["event_id"] for row in rows}

    async def get_events_with_children(self, event_ids: Collection[str]) -> set[str]:
        """Which of these events some stored event already lists in its prev_events."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT prev_event_id FROM event_edges WHERE prev_event_id = ANY($1::text[])",
            list(event_ids),
        )
        return {row["prev_event_id"] for row in rows}

    async def get_room_ids_with_events_between(
        self, room_ids: Collection[str], from_position: int, to_position: int
    ) -> dict[str, int]:
        """`room_id → newest position` for the rooms with client-visible events in
        `(from_position, to_position]`: the rooms an incremental /sync must look at."""
        rows = await self._pool.fetch(
            f"SELECT e.room_id, max(e.stream_ordering) AS position FROM events e"
            f" WHERE e.room_id = ANY($1::text[]) AND e.stream_ordering > $2"
            f" AND e.stream_ordering <= $3 AND {VISIBLE} GROUP BY e.room_id",
            list(room_ids),
            from_position,
            to_position,
        )
        return {row["room_id"]: row["position"] for row in rows}

    async def get_redactions_of(self, event_id: str) -> list[str]:
        """Redaction events that name `event_id` (whether or not they applied)."""
        rows = await self._pool.fetch(
            "SELECT event_id FROM redactions WHERE redacts = $1", event_id
        )
        return [row["event_id"] for row in rows]

