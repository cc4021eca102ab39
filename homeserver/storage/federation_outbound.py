"""SQL of the outbound federation queue (schema/0008_federation_outbound.sql).

The sender reads the event stream (local events after `federation_stream_position`), queues one
`federation_outbox` row per destination and event, and the per-destination workers read their
queue, send it, and delete what the destination acknowledged. Retry state lives in
`federation_destinations`; durable EDUs in `federation_edu_outbox`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from homeserver.storage.events import decode_pdu

# `server_name` of a user ID: everything after the first colon (localparts have none).
_SERVER_OF_STATE_KEY = "substring(state_key from position(':' in state_key) + 1)"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A local event read from the event stream, with what routing it needs."""

    stream_ordering: int
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    # content.membership of an m.room.member event; None for other events.
    membership: str | None


@dataclass(frozen=True, slots=True)
class QueuedPdu:
    stream_ordering: int
    event_id: str
    pdu: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueuedEdu:
    edu_id: int
    edu_type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InflightTransaction:
    """A transaction built for a destination and not yet acknowledged (schema/0013)."""

    txn_id: str
    body: dict[str, Any]
    stream_orderings: tuple[int, ...]  # the PDUs' rows in federation_outbox
    edu_ids: tuple[int, ...]  # the durable EDUs' rows in federation_edu_outbox


@dataclass(frozen=True, slots=True)
class RetryState:
    """A destination's backoff: the next attempt is due at `retry_last_ts + retry_interval_ms`."""

    retry_last_ts: int | None
    retry_interval_ms: int
    failure_count: int

    @property
    def backing_off(self) -> bool:
        return self.retry_interval_ms > 0 and self.retry_last_ts is not None

    @property
    def retry_due_ts(self) -> int:
        return (self.retry_last_ts or 0) + self.retry_interval_ms


NO_BACKOFF = RetryState(retry_last_ts=None, retry_interval_ms=0, failure_count=0)


class FederationOutboundStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- reading the event stream ---------------------------------------------------------

    async def get_stream_position(self) -> int:
        value = await self._pool.fetchval(
            "SELECT stream_ordering FROM federation_stream_position WHERE lock = 'X'"
        )
        return int(value or 0)

    async def get_local_events(
        self, after: int, up_to: int, server_name: str, limit: int
    ) -> list[StreamEvent]:
        """Timeline events sent by users of `server_name` with `after < stream_ordering <=
        up_to`, oldest first. Outliers, soft-failed and rejected events are never sent."""
        rows = await self._pool.fetch(
            "SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.state_key, m.membership"
            " FROM events e LEFT JOIN room_memberships m ON m.event_id = e.event_id"
            " WHERE e.stream_ordering > $1 AND e.stream_ordering <= $2"
            "   AND substring(e.sender from position(':' in e.sender) + 1) = $3"
            "   AND NOT e.outlier AND NOT e.soft_failed AND e.rejection_reason IS NULL"
            " ORDER BY e.stream_ordering LIMIT $4",
            after,
            up_to,
            server_name,
            limit,
        )
        return [
            StreamEvent(
                stream_ordering=row["stream_ordering"],
                event_id=row["event_id"],
                room_id=row["room_id"],
                type=row["type"],
                state_key=row["state_key"],
                membership=row["membership"],
            )
            for row in rows
        ]

    async def get_joined_servers(self, room_ids: Collection[str]) -> dict[str, set[str]]:
        """Room ID → the servers of the room's currently joined members (ours included)."""
        rows = await self._pool.fetch(
            f"SELECT DISTINCT room_id, {_SERVER_OF_STATE_KEY} AS server"
            " FROM current_state_events"
            " WHERE room_id = ANY($1::text[]) AND type = 'm.room.member' AND membership = 'join'",
            list(room_ids),
        )
        servers: dict[str, set[str]] = {room_id: set() for room_id in room_ids}
        for row in rows:
            servers[row["room_id"]].add(row["server"])
        return servers

    async def get_server_acls(self, room_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Room ID → content of its current `m.room.server_acl`, for rooms that have one."""
        rows = await self._pool.fetch(
            "SELECT c.room_id, e.json FROM current_state_events c"
            " JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ANY($1::text[]) AND c.type = 'm.room.server_acl'"
            "   AND c.state_key = ''",
            list(room_ids),
        )
        acls: dict[str, dict[str, Any]] = {}
        for row in rows:
            content = decode_pdu(row["json"]).get("content")
            if isinstance(content, dict):
                acls[row["room_id"]] = content
        return acls

    async def queue_pdus(self, rows: Sequence[tuple[str, StreamEvent]], new_position: int) -> None:
        """Queue `(destination, event)` rows and move the stream position, atomically."""
        async with self._pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.executemany(
                    "INSERT INTO federation_outbox"
                    " (destination, stream_ordering, event_id, room_id)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [(d, e.stream_ordering, e.event_id, e.room_id) for d, e in rows],
                )
            await conn.execute(
                "UPDATE federation_stream_position SET stream_ordering = $1"
                " WHERE lock = 'X' AND stream_ordering < $1",
                new_position,
            )

    async def queue_relayed_pdus(self, rows: Sequence[tuple[str, StreamEvent]]) -> None:
        """Queue `(destination, event)` rows for remote events we relay as a resident server
        (S2S "Joining Rooms"); unlike `queue_pdus` the stream position stays where it is."""
        if not rows:
            return
        await self._pool.executemany(
            "INSERT INTO federation_outbox (destination, stream_ordering, event_id, room_id)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(d, e.stream_ordering, e.event_id, e.room_id) for d, e in rows],
        )

    # --- the per-destination queues -------------------------------------------------------

    async def get_destinations_with_work(self) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT DISTINCT destination FROM federation_outbox"
            " UNION SELECT DISTINCT destination FROM federation_edu_outbox"
            " UNION SELECT destination FROM federation_inflight_transactions"
        )
        return {row["destination"] for row in rows}

    async def get_pending_pdus(self, destination: str, limit: int) -> list[QueuedPdu]:
        """The oldest queued PDUs for `destination`, as currently stored (redacted if they
        have been redacted since)."""
        rows = await self._pool.fetch(
            "SELECT o.stream_ordering, o.event_id, e.json FROM federation_outbox o"
            " JOIN events e ON e.event_id = o.event_id"
            " WHERE o.destination = $1 ORDER BY o.stream_ordering LIMIT $2",
            destination,
            limit,
        )
        return [
            QueuedPdu(row["stream_ordering"], row["event_id"], decode_pdu(row["json"]))
            for row in rows
        ]

    async def get_pending_edus(self, destination: str, limit: int) -> list[QueuedEdu]:
        rows = await self._pool.fetch(
            "SELECT edu_id, edu_type, content FROM federation_edu_outbox"
            " WHERE destination = $1 ORDER BY edu_id LIMIT $2",
            destination,
            limit,
        )
        return [
            QueuedEdu(row["edu_id"], row["edu_type"], orjson.loads(row["content"])) for row in rows
        ]

    async def queue_edus(
        self, destinations: Iterable[str], edu_type: str, content: Mapping[str, Any], now_ms: int
    ) -> None:
        text = orjson.dumps(dict(content)).decode()
        await self._pool.executemany(
            "INSERT INTO federation_edu_outbox (destination, edu_type, content, created_ts)"
            " VALUES ($1, $2, $3, $4)",
            [(destination, edu_type, text, now_ms) for destination in destinations],
        )

    # --- the transaction in flight (S2S "Transactions": retried under the same txnId) ----

    async def save_inflight(
        self, destination: str, transaction: InflightTransaction, now_ms: int
    ) -> None:
        """Remember `transaction` before its first attempt, so that after a restart it is
        retried as it was: same txnId, same body."""
        await self._pool.execute(
            "INSERT INTO federation_inflight_transactions"
            " (destination, txn_id, body, stream_orderings, edu_ids, created_ts)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (destination) DO UPDATE SET txn_id = $2, body = $3,"
            "  stream_orderings = $4, edu_ids = $5, created_ts = $6",
            destination,
            transaction.txn_id,
            orjson.dumps(transaction.body).decode(),
            list(transaction.stream_orderings),
            list(transaction.edu_ids),
            now_ms,
        )

    async def get_inflight_transactions(self) -> dict[str, InflightTransaction]:
        """Destination → the transaction an earlier run left unacknowledged."""
        rows = await self._pool.fetch(
            "SELECT destination, txn_id, body, stream_orderings, edu_ids"
            " FROM federation_inflight_transactions"
        )
        return {
            row["destination"]: InflightTransaction(
                txn_id=row["txn_id"],
                body=orjson.loads(row["body"]),
                stream_orderings=tuple(row["stream_orderings"]),
                edu_ids=tuple(row["edu_ids"]),
            )
            for row in rows
        }

    async def mark_sent(
        self,
        destination: str,
        stream_orderings: Sequence[int],
        edu_ids: Sequence[int],
        now_ms: int,
    ) -> None:
        """The destination acknowledged a transaction: forget what it carried (and the
        transaction itself) and clear the destination's backoff, in one database
        transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM federation_inflight_transactions WHERE destination = $1",
                destination,
            )
            if stream_orderings:
                await conn.execute(
                    "DELETE FROM federation_outbox"
                    " WHERE destination = $1 AND stream_ordering = ANY($2::bigint[])",
                    destination,
                    list(stream_orderings),
                )
            if edu_ids:
                await conn.execute(
                    "DELETE FROM federation_edu_outbox WHERE edu_id = ANY($1::bigint[])",
                    list(edu_ids),
                )
            await conn.execute(
                "INSERT INTO federation_destinations AS d"
                " (destination, retry_last_ts, retry_interval_ms, failure_count,"
                "  last_successful_stream_ordering, last_success_ts)"
                " VALUES ($1, NULL, 0, 0, $2, $3)"
                " ON CONFLICT (destination) DO UPDATE SET retry_last_ts = NULL,"
                "  retry_interval_ms = 0, failure_count = 0, last_success_ts = $3,"
                "  last_successful_stream_ordering = GREATEST("
                "    d.last_successful_stream_ordering, EXCLUDED.last_successful_stream_ordering)",
                destination,
                max(stream_orderings, default=None),
                now_ms,
            )

    async def drop_queue(self, destination: str) -> None:
        """Forget everything queued for `destination` (federation with it is not allowed)."""
        async with self._pool.acquire() as conn, conn.transaction():
            for table in (
                "federation_outbox",
                "federation_edu_outbox",
                "federation_inflight_transactions",
            ):
                await conn.execute(f"DELETE FROM {table} WHERE destination = $1", destination)

    async def trim_backlog(self, destination: str, max_pdus: int, max_edus: int) -> int:
        """Bound a dead destination's queue: keep its newest `max_pdus` PDUs plus each room's
        newest one (the peer fetches the rest with /get_missing_events), and its newest
        `max_edus` EDUs. Returns how many rows were deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            pdus = await conn.execute(
                "DELETE FROM federation_outbox o WHERE o.destination = $1"
                " AND o.stream_ordering <= (SELECT stream_ordering FROM federation_outbox"
                "   WHERE destination = $1 ORDER BY stream_ordering DESC OFFSET $2 LIMIT 1)"
                " AND o.stream_ordering < (SELECT max(n.stream_ordering) FROM federation_outbox n"
                "   WHERE n.destination = $1 AND n.room_id = o.room_id)",
                destination,
                max_pdus,
            )
            edus = await conn.execute(
                "DELETE FROM federation_edu_outbox WHERE destination = $1"
                " AND edu_id <= (SELECT edu_id FROM federation_edu_outbox"
                "   WHERE destination = $1 ORDER BY edu_id DESC OFFSET $2 LIMIT 1)",
                destination,
                max_edus,
            )
        return _deleted(pdus) + _deleted(edus)

    # --- retry state ----------------------------------------------------------------------

    async def get_retry_state(self, destination: str) -> RetryState:
        row = await self._pool.fetchrow(
            "SELECT retry_last_ts, retry_interval_ms, failure_count"
            " FROM federation_destinations WHERE destination = $1",
            destination,
        )
        if row is None:
            return NO_BACKOFF
        return RetryState(row["retry_last_ts"], row["retry_interval_ms"], row["failure_count"])

    async def get_backoff_states(self) -> dict[str, RetryState]:
        """Every destination currently backing off, with its retry state."""
        rows = await self._pool.fetch(
            "SELECT destination, retry_last_ts, retry_interval_ms, failure_count"
            " FROM federation_destinations WHERE retry_interval_ms > 0"
        )
        return {
            row["destination"]: RetryState(
                row["retry_last_ts"], row["retry_interval_ms"], row["failure_count"]
            )
            for row in rows
        }

    async def set_retry_state(self, destination: str, state: RetryState) -> None:
        await self._pool.execute(
            "INSERT INTO federation_destinations"
            " (destination, retry_last_ts, retry_interval_ms, failure_count)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (destination) DO UPDATE SET retry_last_ts = $2,"
            "  retry_interval_ms = $3, failure_count = $4",
            destination,
            state.retry_last_ts,
            state.retry_interval_ms,
            state.failure_count,
        )


def _deleted(status: str) -> int:
    """The row count of a `DELETE n` command status."""
    return int(status.rsplit(" ", 1)[-1])
