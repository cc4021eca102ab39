"""Group-committed local sends: one statement per batch of plain messages, txnId retries
detected by the stored transaction ID itself (C-S "Transaction identifiers")."""

from __future__ import annotations

import asyncio

import asyncpg

from federation.pdu import Event
from homeserver.storage.rooms import ClientTransaction
from tests.services.pipeline_harness import ALICE, create_room, make_harness


async def _send(h: object, room_id: str, body: str, txn: ClientTransaction | None) -> Event:
    event: Event = await h.pipeline.create_local_event(  # type: ignore[attr-defined]
        room_id, "m.room.message", ALICE, {"msgtype": "m.text", "body": body}, txn=txn
    )
    return event


def _txn(room_id: str, txn_id: str) -> ClientTransaction:
    return ClientTransaction(ALICE, "DEVICE", f"send:{room_id}:m.room.message", txn_id)


async def test_a_retry_after_restart_in_a_batch_with_new_messages_keeps_them_all(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    original = await _send(h, room_id, "one", _txn(room_id, "t1"))

    restarted = await make_harness(pool)  # nothing in memory knows t1 any more
    retry, two, three = await asyncio.gather(
        _send(restarted, room_id, "one", _txn(room_id, "t1")),
        _send(restarted, room_id, "two", _txn(room_id, "t2")),
        _send(restarted, room_id, "three", None),
    )

    assert retry.event_id == original.event_id
    assert await pool.fetchval("SELECT count(*) FROM events WHERE txn_id = 't1'") == 1
    stored = await restarted.events.get_event_rows([two.event_id, three.event_id])
    assert set(stored) == {two.event_id, three.event_id}
    # The batch was built again without the retry: a linear chain on top of the original.
    assert list(two.prev_event_ids) == [original.event_id]
    assert list(three.prev_event_ids) == [two.event_id]
    extremities = await pool.fetch(
        "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
    )
    assert [r["event_id"] for r in extremities] == [three.event_id]
    assert await restarted.rooms.get_client_transaction(_txn(room_id, "t2")) == (
        f'{{"event_id":"{two.event_id}"}}'
    )


async def test_concurrent_sends_get_increasing_unique_positions_and_every_row(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)

    sent = await asyncio.gather(
        *(_send(h, room_id, str(i), _txn(room_id, f"c{i}")) for i in range(30))
    )

    rows = await pool.fetch(
        "SELECT e.event_id, e.stream_ordering, g.state_group FROM events e"
        " JOIN event_state_groups g USING (event_id) WHERE e.event_id = ANY($1::text[])"
        " ORDER BY e.stream_ordering",
        [e.event_id for e in sent],
    )
    assert [r["event_id"] for r in rows] == [e.event_id for e in sent]  # queue order
    edges = await pool.fetchval(
        "SELECT count(*) FROM event_edges WHERE event_id = ANY($1::text[])",
        [e.event_id for e in sent],
    )
    assert edges == 30
    assert (
        await pool.fetchval("SELECT count(*) FROM client_transactions WHERE txn_id LIKE 'c%'") == 30
    )
