"""The persist statement and stream positions on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from homeserver.storage.event_rows import EventToPersist, PersistBatch
from homeserver.storage.events import POSITION_BLOCK, EventsStore, TransactionIdTaken
from homeserver.storage.rooms import ClientTransaction
from tests.services.pipeline_harness import ALICE, SERVER, create_room, make_harness


async def test_positions_increase_across_blocks_and_concurrent_callers(
    pool: asyncpg.Pool,
) -> None:
    store = EventsStore(pool, SERVER)
    handed_out: list[int] = []  # in the order the callers got them

    async def take(count: int) -> None:
        positions = await store.allocate_stream_positions(count)
        assert len(positions) == count
        handed_out.extend(positions)

    await take(3)
    await asyncio.gather(*(take(n) for n in (POSITION_BLOCK, 1, 7, POSITION_BLOCK * 2)))
    await take(1)

    assert len(handed_out) == 3 + POSITION_BLOCK * 3 + 8 + 1
    assert handed_out == sorted(set(handed_out))  # unique, and never below an earlier one


async def test_a_stored_transaction_id_aborts_the_whole_batch(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    txn = ClientTransaction(ALICE, "DEV", f"send:{room_id}:m.room.message", "dup")
    event = await h.pipeline.create_local_event(
        room_id, "m.room.message", ALICE, {"body": "x"}, txn=txn
    )
    row = (await h.events.get_event_rows([event.event_id]))[event.event_id]
    events_before = await pool.fetchval("SELECT count(*) FROM events")

    # The same txnId again, on a copy of the event under another ID and position.
    copy = dataclasses.replace(row.event, event_id="$copy")
    (position,) = await h.events.allocate_stream_positions(1)
    again = EventToPersist(copy, position, txn=txn, txn_response="{}")
    with pytest.raises(TransactionIdTaken):
        await h.events.persist(PersistBatch(room_id, [again], now_ms=1))

    assert await pool.fetchval("SELECT count(*) FROM events") == events_before
    assert await h.rooms.get_client_transaction(txn) == f'{{"event_id":"{event.event_id}"}}'
