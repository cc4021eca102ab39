"""Rooms, forward extremities, current state, memberships and client transaction IDs.

Tables (schema/0002_rooms_events.sql): `rooms`, `room_forward_extremities`,
`current_state_events`, `room_memberships`, `local_current_membership`, `client_transactions`.
The write helpers take the connection of the event pipeline's transaction
(`homeserver/storage/events.py`); `RoomsStore` holds the reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import asyncpg

StateKey = tuple[str, str]

MEMBER = "m.room.member"


@dataclass(frozen=True, slots=True)
class NewRoom:
    room_id: str
    room_version: str
    created_ts: int
    is_public: bool = False


@dataclass(frozen=True, slots=True)
class ClientTransaction:
    """A client request's transaction ID, scoped per device and endpoint (C-S "Transaction
    identifiers"). `kind` names the endpoint with its path parameters, e.g.
    `send:!room:hs:m.room.message`, so the same txnId on another path is another request."""

    user_id: str
    device_id: str
    kind: str
    txn_id: str


@dataclass(frozen=True, slots=True)
class CurrentStateDelta:
    """Changes to a room's current state: keys now pointing at other events, keys removed."""

    upserts: Mapping[StateKey, str]
    removed: Collection[StateKey] = ()

    def __bool__(self) -> bool:
        return bool(self.upserts) or bool(self.removed)


@dataclass(frozen=True, slots=True)
class Membership:
    room_id: str
    user_id: str
    membership: str
    event_id: str
    stream_ordering: int


# --- writes (inside the persist transaction) ----------------------------------------------


async def insert_room(conn: asyncpg.Connection, room: NewRoom) -> None:
    await conn.execute(
        "INSERT INTO rooms (room_id, room_version, created_ts, is_public)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (room_id) DO NOTHING",
        room.room_id,
        room.room_version,
        room.created_ts,
        room.is_public,
    )


async def update_forward_extremities(
    conn: asyncpg.Connection, room_id: str, removed: Collection[str], added: Collection[str]
) -> None:
    if removed:
        await conn.execute(
            "DELETE FROM room_forward_extremities WHERE room_id = $1 AND event_id = ANY($2)",
            room_id,
            list(removed),
        )
    if added:
        await conn.executemany(
            "INSERT INTO room_forward_extremities (room_id, event_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            [(room_id, event_id) for event_id in added],
        )


async def update_current_state(
    conn: asyncpg.Connection, room_id: str, delta: CurrentStateDelta, server_name: str
) -> None:
    """Apply `delta` to `current_state_events` and keep `local_current_membership` in step.

    The events named in `delta.upserts` must already be in `events` (this transaction or
    before); membership and stream position are read from there.
    """
    if delta.removed:
        await conn.executemany(
            "DELETE FROM current_state_events WHERE room_id = $1 AND type = $2 AND state_key = $3",
            [(room_id, t, s) for t, s in delta.removed],
        )
        members = [s for t, s in delta.removed if t == MEMBER]
        if members:
            await conn.execute(
                "DELETE FROM local_current_membership WHERE room_id = $1 AND user_id = ANY($2)",
                room_id,
                members,
            )
    if not delta.upserts:
        return
    event_ids = list(delta.upserts.values())
    await conn.execute(
        """
        INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)
        SELECT room_id, type, state_key, event_id,
               CASE WHEN type = 'm.room.member' THEN json::jsonb -> 'content' ->> 'membership' END
        FROM events WHERE event_id = ANY($1::text[]) AND state_key IS NOT NULL
        ON CONFLICT (room_id, type, state_key)
        DO UPDATE SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership
        """,
        event_ids,
    )
    # Local users only: the part of the user ID after the first ':' is our server name.
    await conn.execute(
        """
        INSERT INTO local_current_membership
            (room_id, user_id, membership, event_id, stream_ordering)
        SELECT room_id, state_key, json::jsonb -> 'content' ->> 'membership', event_id,
               stream_ordering
        FROM events
        WHERE event_id = ANY($1::text[]) AND type = 'm.room.member'
          AND substr(state_key, strpos(state_key, ':') + 1) = $2
          AND json::jsonb -> 'content' ->> 'membership' IS NOT NULL
        ON CONFLICT (room_id, user_id) DO UPDATE SET
            membership = EXCLUDED.membership, event_id = EXCLUDED.event_id,
            stream_ordering = EXCLUDED.stream_ordering
        """,
        event_ids,
        server_name,
    )


async def set_out_of_band_memberships(
    conn: asyncpg.Connection, rows: Iterable[tuple[str, str, str, str, int]]
) -> None:
    """`(room_id, user_id, membership, event_id, stream_ordering)` of local users' memberships
    in rooms this server has no state for (received invites, their rejections)."""
    rows = list(rows)
    if rows:
        await conn.executemany(
            "INSERT INTO local_current_membership"
            " (room_id, user_id, membership, event_id, stream_ordering)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, user_id) DO UPDATE SET"
            " membership = EXCLUDED.membership, event_id = EXCLUDED.event_id,"
            " stream_ordering = EXCLUDED.stream_ordering",
            rows,
        )


async def insert_memberships(
    conn: asyncpg.Connection, rows: Iterable[tuple[str, str, str, str, str, int]]
) -> None:
    """`(event_id, room_id, user_id, sender, membership, stream_ordering)` per member event."""
    rows = list(rows)
    if rows:
        await conn.executemany(
            "INSERT INTO room_memberships"
            " (event_id, room_id, user_id, sender, membership, stream_ordering)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            rows,
        )


async def insert_client_transactions(
    conn: asyncpg.Connection, rows: Iterable[tuple[ClientTransaction, str, int]]
) -> None:
    """`(txn, response JSON, created_ts)` rows; a txn already stored keeps its response."""
    values = [(t.user_id, t.device_id, t.kind, t.txn_id, response, ts) for t, response, ts in rows]
    if values:
        await conn.executemany(
            "INSERT INTO client_transactions"
            " (user_id, device_id, kind, txn_id, response, created_ts)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            values,
        )


class RoomsStore:
    """Reads (and the few writes outside the event pipeline) of room-level tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_room_version(self, room_id: str) -> str | None:
        """The room's version identifier; None for a room this server does not know."""
        version: str | None = await self._pool.fetchval(
            "SELECT room_version FROM rooms WHERE room_id = $1", room_id
        )
        return version

    async def set_room_is_public(self, room_id: str, is_public: bool) -> bool:
        """Publish or unpublish in the room directory; False if the room is unknown."""
        result: str = await self._pool.execute(
            "UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, is_public
        )
        return result != "UPDATE 0"

    async def get_public_room_ids(self) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT room_id FROM rooms WHERE is_public ORDER BY created_ts"
        )
        return [row["room_id"] for row in rows]

    async def is_room_public(self, room_id: str) -> bool:
        return bool(
            await self._pool.fetchval("SELECT is_public FROM rooms WHERE room_id = $1", room_id)
        )

    async def get_forward_extremities(self, room_id: str) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
        )
        return {row["event_id"] for row in rows}

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        rows = await self._pool.fetch(
            "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = $1",
            room_id,
        )
        return {(row["type"], row["state_key"]): row["event_id"] for row in rows}

    async def get_members(
        self, room_id: str, memberships: Collection[str] = ("join",)
    ) -> dict[str, str]:
        """`user_id → membership` of the room's current members with one of `memberships`."""
        rows = await self._pool.fetch(
            "SELECT state_key, membership FROM current_state_events"
            " WHERE room_id = $1 AND type = 'm.room.member' AND membership = ANY($2::text[])",
            room_id,
            list(memberships),
        )
        return {row["state_key"]: row["membership"] for row in rows}

    async def get_rooms_for_user(
        self, user_id: str, memberships: Collection[str] = ("join",)
    ) -> set[str]:
        """Rooms where `user_id` (local or remote) currently has one of `memberships`."""
        rows = await self._pool.fetch(
            "SELECT room_id FROM current_state_events"
            " WHERE type = 'm.room.member' AND state_key = $1 AND membership = ANY($2::text[])",
            user_id,
            list(memberships),
        )
        return {row["room_id"] for row in rows}

    async def get_local_memberships(self, user_id: str) -> list[Membership]:
        """Every room a local user has a current membership in (any kind), for /sync."""
        rows = await self._pool.fetch(
            "SELECT room_id, user_id, membership, event_id, stream_ordering"
            " FROM local_current_membership WHERE user_id = $1 ORDER BY stream_ordering",
            user_id,
        )
        return [Membership(**dict(row)) for row in rows]

    async def get_client_transaction(self, txn: ClientTransaction) -> str | None:
        """The stored response (JSON text) of an earlier request with this txnId, if any."""
        response: str | None = await self._pool.fetchval(
            "SELECT response FROM client_transactions"
            " WHERE user_id = $1 AND device_id = $2 AND kind = $3 AND txn_id = $4",
            txn.user_id,
            txn.device_id,
            txn.kind,
            txn.txn_id,
        )
        return response

    async def get_client_transactions(
        self, txns: Collection[ClientTransaction]
    ) -> dict[ClientTransaction, str]:
        """Stored responses for several txnIds at once (one query)."""
        if not txns:
            return {}
        unique = list(dict.fromkeys(txns))
        rows = await self._pool.fetch(
            """
            SELECT t.user_id, t.device_id, t.kind, t.txn_id, t.response
            FROM client_transactions t
            JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(u, d, kd, x)
              ON t.user_id = k.u AND t.device_id = k.d AND t.kind = k.kd AND t.txn_id = k.x
            """,
            [t.user_id for t in unique],
            [t.device_id for t in unique],
            [t.kind for t in unique],
            [t.txn_id for t in unique],
        )
        return {
            ClientTransaction(r["user_id"], r["device_id"], r["kind"], r["txn_id"]): r["response"]
            for r in rows
        }

    async def store_client_transaction(
        self, txn: ClientTransaction, response: str, now_ms: int
    ) -> str:
        """Remember the response of a request that creates no event (e.g. /sendToDevice).

        Returns the response stored for this txnId: `response`, or an earlier one if a
        concurrent request with the same txnId got there first.
        """
        stored: str | None = await self._pool.fetchval(
            "INSERT INTO client_transactions"
            " (user_id, device_id, kind, txn_id, response, created_ts)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (user_id, device_id, kind, txn_id)"
            " DO UPDATE SET response = client_transactions.response RETURNING response",
            txn.user_id,
            txn.device_id,
            txn.kind,
            txn.txn_id,
            response,
            now_ms,
        )
        return stored if stored is not None else response

    async def delete_client_transactions_before(self, before_ms: int) -> int:
        """Forget txnIds older than `before_ms` (keep at least 7 days: CONTRACT.md)."""
        result = await self._pool.execute(
            "DELETE FROM client_transactions WHERE created_ts < $1", before_ms
        )
        return int(result.split()[-1])
