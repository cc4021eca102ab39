"""Event and state storage on a real PostgreSQL: what is written is what is read back."""

from __future__ import annotations

import asyncpg

from homeserver.services.state import RoomStateCache
from homeserver.storage.rooms import ClientTransaction, RoomsStore
from homeserver.storage.state import (
    MAX_DELTA_CHAIN,
    StateGroupInfo,
    StateStore,
    insert_state_groups,
    plan_state_group,
)
from tests.services.pipeline_harness import ALICE, create_room, make_harness


async def test_a_chain_of_events_reads_back_exactly_in_stream_and_topological_order(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, created = await create_room(h)
    sent = [
        await h.pipeline.create_local_event(room_id, "m.room.message", ALICE, {"body": str(i)})
        for i in range(6)
    ]

    rows = await h.events.get_event_rows([e.event_id for e in sent] + ["$unknown"])
    assert set(rows) == {e.event_id for e in sent}
    for event in sent:
        assert dict(rows[event.event_id].event.pdu) == dict(event.pdu)
        assert rows[event.event_id].visible_to_clients
    newest_three = await h.events.get_room_events_in_range(room_id, 0, 10**9, 3)
    assert [r.event.event_id for r in newest_three] == [e.event_id for e in sent[-3:]]
    backwards = await h.events.paginate_room_events(room_id, None, "b", 4)
    assert [r.event.event_id for r in backwards] == [e.event_id for e in reversed(sent[-4:])]
    last = backwards[-1]
    older = await h.events.paginate_room_events(
        room_id, (last.event.depth, last.stream_ordering), "b", 100
    )
    assert [r.event.event_id for r in older] == [e.event_id for e in reversed(created + sent[:2])]
    forwards = await h.events.paginate_room_events(room_id, None, "f", 2)
    assert [r.event.event_id for r in forwards] == [e.event_id for e in created[:2]]


async def test_state_deltas_and_snapshots_rebuild_exactly_the_state_after_each_event(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, created = await create_room(h)
    expected = {e.state_tuple: e.event_id for e in created}
    expected_after: dict[str, dict[tuple[str, str], str]] = {}
    for i in range(130):
        # New keys and overwrites of old ones, so deltas both add and replace.
        key = f"k{i % 40}"
        event = await h.pipeline.create_local_event(
            room_id, "org.example.setting", ALICE, {"value": i}, key
        )
        expected[("org.example.setting", key)] = event.event_id
        expected_after[event.event_id] = dict(expected)

    cold = StateStore(pool)
    groups = await cold.get_state_groups_for_events(expected_after)
    for event_id, state in expected_after.items():
        assert await cold.get_state_group_state(groups[event_id][0]) == state
    assert await h.rooms.get_current_state_ids(room_id) == expected
    chains = await pool.fetch(
        "SELECT delta_count, prev_state_group FROM state_groups WHERE room_id = $1", room_id
    )
    assert max(r["delta_count"] for r in chains) == MAX_DELTA_CHAIN
    assert sum(1 for r in chains if r["prev_state_group"] is None) >= 2
    entries = await pool.fetchval("SELECT count(*) FROM state_group_entries")
    full_copies = sum(len(s) for s in expected_after.values())
    assert entries < full_copies / 5  # deltas, not a copy of the state per event


async def test_a_delta_can_remove_a_key_and_the_cache_rebuilds_it_the_same_way(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, created = await create_room(h)
    base_state = {e.state_tuple: e.event_id for e in created}
    smaller = {k: v for k, v in base_state.items() if k[0] != "m.room.history_visibility"}
    snapshot = plan_state_group(1001, room_id, base_state, None, None)
    delta = plan_state_group(1002, room_id, smaller, snapshot.info, base_state)
    assert delta.entries == {("m.room.history_visibility", ""): None}
    async with pool.acquire() as conn:
        await insert_state_groups(conn, [snapshot, delta])

    assert await StateStore(pool).get_state_group_state(1002) == smaller
    cache = RoomStateCache(h.events, h.rooms, StateStore(pool))
    assert dict(await cache.get_state_group_state(1001)) == base_state
    assert dict(await cache.get_state_group_state(1002)) == smaller  # via the cached base


def test_a_long_delta_chain_is_cut_by_a_snapshot() -> None:
    state = {("m.room.topic", ""): "$b"}
    base_state = {("m.room.topic", ""): "$a"}
    short = plan_state_group(2, "!r:x", state, StateGroupInfo(1, None, 0), base_state)
    long = plan_state_group(3, "!r:x", state, StateGroupInfo(1, 0, MAX_DELTA_CHAIN), base_state)
    assert (short.prev_state_group, short.delta_count) == (1, 1)
    assert (long.prev_state_group, long.delta_count, dict(long.entries)) == (None, 0, state)


async def test_auth_chain_reaches_the_create_event(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, created = await create_room(h)
    message = await h.pipeline.create_local_event(room_id, "m.room.message", ALICE, {"body": "x"})

    chain = await h.events.get_auth_chain_ids([message.event_id])
    create, join, power_levels = created[0], created[1], created[2]
    assert set(message.auth_event_ids) <= chain
    assert {create.event_id, join.event_id, power_levels.event_id} <= chain


async def test_client_transactions_are_durable_first_writer_wins_and_expire(
    pool: asyncpg.Pool,
) -> None:
    rooms = RoomsStore(pool)
    txn = ClientTransaction(ALICE, "DEV", "sendToDevice:m.test", "t1")
    other_device = ClientTransaction(ALICE, "DEV2", "sendToDevice:m.test", "t1")

    assert await rooms.store_client_transaction(txn, "{}", now_ms=1_000) == "{}"
    assert await rooms.store_client_transaction(txn, '{"late": 1}', now_ms=2_000) == "{}"
    assert await rooms.get_client_transaction(txn) == "{}"
    assert await rooms.get_client_transaction(other_device) is None
    assert await rooms.get_client_transactions([txn, other_device]) == {txn: "{}"}
    assert await rooms.delete_client_transactions_before(1_500) == 1
    assert await rooms.get_client_transaction(txn) is None


async def test_room_directory_flag_and_memberships_of_a_new_room(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    assert not await h.rooms.is_room_public(room_id)
    assert await h.rooms.set_room_is_public(room_id, True)
    assert await h.rooms.get_public_room_ids() == [room_id]
    assert not await h.rooms.set_room_is_public("!unknown:x", True)
    history = await pool.fetch("SELECT user_id, membership FROM room_memberships")
    assert [(r["user_id"], r["membership"]) for r in history] == [(ALICE, "join")]
