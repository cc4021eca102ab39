"""The one statement at the heart of the persist transaction (homeserver/storage/events.py).

Every batch writes the same tables: the events, their DAG edges, the state groups around each
timeline event, the room's forward extremities and the client transaction IDs that created
them (C-S "Transaction identifiers"). All of them go to PostgreSQL as one statement of
data-modifying CTEs over column arrays (`unnest`): one round trip, one plan prepared once per
connection. A statement outside an explicit transaction is a transaction of its own, so a batch
of plain messages (nothing else to write) is persisted, atomically and durably, in exactly one
round trip, without BEGIN and COMMIT.

The transaction IDs are inserted without `ON CONFLICT`: a txnId that is already stored aborts
the whole statement (`TransactionIdTaken`), and the pipeline answers that request with the
original event instead (it checks the stored transaction IDs only then, not before every batch).
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from homeserver.storage.edge_rows import edge_arrays
from homeserver.storage.event_rows import PersistBatch, encode_pdu

CLIENT_TRANSACTIONS_KEY: Final = "client_transactions_pkey"


class TransactionIdTaken(Exception):
    """A client transaction ID of the batch is already stored: nothing was written."""


PERSIST_CORE_SQL: Final = """
WITH new_events AS (
    INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender,
        origin_server_ts, json, outlier, soft_failed, rejection_reason, txn_device_id, txn_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
        $6::text[], $7::text[], $8::bigint[], $9::text[], $10::boolean[], $11::boolean[],
        $12::text[], $13::text[], $14::text[])
), prev_edges AS (
    INSERT INTO event_edges (event_id, prev_event_id)
    SELECT * FROM unnest($15::text[], $16::text[]) ON CONFLICT DO NOTHING
), auth_edges AS (
    INSERT INTO event_auth_edges (event_id, auth_event_id)
    SELECT * FROM unnest($17::text[], $18::text[]) ON CONFLICT DO NOTHING
), groups AS (
    INSERT INTO event_state_groups (event_id, state_group, state_group_before)
    SELECT * FROM unnest($19::text[], $20::bigint[], $21::bigint[])
), old_extremities AS (
    DELETE FROM room_forward_extremities WHERE room_id = $22 AND event_id = ANY($23::text[])
), new_extremities AS (
    INSERT INTO room_forward_extremities (room_id, event_id)
    SELECT $22, x FROM unnest($24::text[]) AS x ON CONFLICT DO NOTHING
), transactions AS (
    INSERT INTO client_transactions (user_id, device_id, kind, txn_id, response, created_ts)
    SELECT *, $30::bigint FROM unnest($25::text[], $26::text[], $27::text[], $28::text[],
        $29::text[])
)
SELECT 1
"""


def persist_core_arguments(batch: PersistBatch) -> list[Any]:
    """The arguments of `PERSIST_CORE_SQL` for `batch`: one array per column."""
    events = batch.events
    columns: list[list[Any]] = [[] for _ in range(14)]
    groups: tuple[list[str], list[int], list[int]] = ([], [], [])
    txns: tuple[list[str], list[str], list[str], list[str], list[str]] = ([], [], [], [], [])
    for p in events:
        e = p.event
        txn = p.txn
        row = (
            e.event_id,
            e.room_id,
            p.stream_ordering,
            e.depth,
            e.type,
            e.state_key,
            e.sender,
            e.origin_server_ts,
            encode_pdu(e.pdu),
            p.outlier,
            p.soft_failed,
            p.rejection_reason,
            txn.device_id if txn else None,
            txn.txn_id if txn else None,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        if p.state_group_after is not None and p.state_group_before is not None:
            groups[0].append(e.event_id)
            groups[1].append(p.state_group_after)
            groups[2].append(p.state_group_before)
        if txn is not None and p.txn_response is not None:
            for column, text in zip(
                txns,
                (txn.user_id, txn.device_id, txn.kind, txn.txn_id, p.txn_response),
                strict=True,
            ):
                column.append(text)
    edges = edge_arrays(events)
    return [
        *columns,
        edges.prev_from,
        edges.prev_to,
        edges.auth_from,
        edges.auth_to,
        *groups,
        batch.room_id,
        list(batch.extremities_removed),
        list(batch.extremities_added),
        *txns,
        batch.now_ms,
    ]


async def execute_persist_core(
    conn: asyncpg.Connection | asyncpg.Pool, batch: PersistBatch
) -> None:
    """Run the statement; a stored client transaction ID raises `TransactionIdTaken`."""
    try:
        await conn.execute(PERSIST_CORE_SQL, *persist_core_arguments(batch))
    except asyncpg.UniqueViolationError as e:
        if getattr(e, "constraint_name", None) == CLIENT_TRANSACTIONS_KEY:
            raise TransactionIdTaken(str(e)) from e
        raise
