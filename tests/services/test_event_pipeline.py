"""The event pipeline on a real PostgreSQL: build → auth → one transaction → state → notify."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import pytest

from federation.hashing import compute_event_id
from federation.pdu import Event
from federation.room_versions import V1, V11, V12
from federation.signing import add_hashes_and_signatures, generate_signing_key
from homeserver.errors import MatrixError
from homeserver.services.event_builder import NewEvent
from homeserver.storage.rooms import ClientTransaction
from tests.services.pipeline_harness import (
    ALICE,
    BOB,
    MEMBER,
    SERVER,
    count_rows,
    create_room,
    make_harness,
)

REMOTE_USER = "@carol:remote.test"
REMOTE_KEY = generate_signing_key("remote")


async def send_message(h: Any, room_id: str, body: str, sender: str = ALICE, **kw: Any) -> Event:
    event: Event = await h.pipeline.create_local_event(
        room_id, "m.room.message", sender, {"msgtype": "m.text", "body": body}, **kw
    )
    return event


async def test_room_creation_stores_state_membership_and_one_extremity(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)

    assert [e.depth for e in events] == [1, 2, 3, 4, 5]
    assert all(e.prev_event_ids == (p.event_id,) for p, e in itertools.pairwise(events))
    assert await h.rooms.get_room_version(room_id) == "11"
    assert await h.rooms.get_forward_extremities(room_id) == {events[-1].event_id}
    stored_state = await h.rooms.get_current_state_ids(room_id)
    assert stored_state == {e.state_tuple: e.event_id for e in events}
    assert await h.rooms.get_members(room_id) == {ALICE: "join"}
    assert await h.rooms.get_rooms_for_user(ALICE) == {room_id}
    [membership] = await h.rooms.get_local_memberships(ALICE)
    assert (membership.room_id, membership.membership) == (room_id, "join")
    # The cache agrees with storage, and so does a cold cache.
    assert dict(await h.cache.get_current_state_ids(room_id)) == stored_state
    cold = await make_harness(pool)
    assert dict(await cold.cache.get_current_state_ids(room_id)) == stored_state


async def test_v12_room_id_is_the_create_event_id_and_create_is_not_an_auth_event(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h, room_version=V12)
    create = events[0]

    assert "room_id" not in create.pdu
    assert room_id == "!" + create.event_id[1:]
    assert all(e.room_id == room_id for e in events)
    assert all(create.event_id not in e.auth_event_ids for e in events[1:])
    assert await h.rooms.get_room_version(room_id) == "12"
    message = await send_message(h, room_id, "hello v12")
    assert message.prev_event_ids == (events[-1].event_id,)


async def test_v1_room_events_carry_their_own_ids_and_hashed_references(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h, room_version=V1)
    message = await send_message(h, room_id, "old school")

    assert message.event_id.endswith(f":{SERVER}")
    assert message.pdu["event_id"] == message.event_id
    [[prev_id, hashes]] = message.pdu["prev_events"]
    assert prev_id == events[-1].event_id and set(hashes) == {"sha256"}
    assert events[0].content["creator"] == ALICE


async def test_messages_form_a_chain_with_increasing_depth_and_stream_order(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)
    sent = [await send_message(h, room_id, f"m{i}") for i in range(5)]

    previous = events[-1]
    for event in sent:
        assert event.prev_event_ids == (previous.event_id,)
        assert event.depth == previous.depth + 1
        previous = event
    rows = await h.events.get_event_rows(e.event_id for e in sent)
    orderings = [rows[e.event_id].stream_ordering for e in sent]
    assert orderings == sorted(orderings)
    assert h.tracker.current_position == orderings[-1]
    assert await h.rooms.get_forward_extremities(room_id) == {sent[-1].event_id}


async def test_hundred_concurrent_sends_in_one_room_make_a_linear_chain(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)

    sent = await asyncio.gather(*(send_message(h, room_id, f"c{i}") for i in range(100)))

    chain = sorted(sent, key=lambda e: e.depth)
    assert [e.depth for e in chain] == list(range(6, 106))
    previous = events[-1]
    for event in chain:
        assert event.prev_event_ids == (previous.event_id,)
        previous = event
    assert await h.rooms.get_forward_extremities(room_id) == {chain[-1].event_id}
    # The clients were answered in the order their events joined the chain.
    assert [e.event_id for e in sent] == [e.event_id for e in chain]


async def test_auth_failure_is_forbidden_and_persists_nothing(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    before = await count_rows(pool, "events")
    extremities = await h.rooms.get_forward_extremities(room_id)

    with pytest.raises(MatrixError) as raised:
        await send_message(h, room_id, "I am not in this room", sender=BOB)

    assert (raised.value.status, raised.value.errcode) == (403, "M_FORBIDDEN")
    assert BOB in raised.value.error
    assert await count_rows(pool, "events") == before
    assert await h.rooms.get_forward_extremities(room_id) == extremities


async def test_one_forbidden_event_in_a_batch_does_not_fail_the_others(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)

    results = await asyncio.gather(
        *(send_message(h, room_id, f"ok{i}") for i in range(5)),
        send_message(h, room_id, "nope", sender=BOB),
        *(send_message(h, room_id, f"ok{i}") for i in range(5, 10)),
        return_exceptions=True,
    )

    assert isinstance(results[5], MatrixError) and results[5].status == 403
    good = [r for r in results if isinstance(r, Event)]
    assert len(good) == 10
    assert [e.depth for e in good] == list(range(6, 16))
    assert good[5].prev_event_ids == (good[4].event_id,)


async def test_unknown_room_is_not_found(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    with pytest.raises(MatrixError) as raised:
        await send_message(h, f"!nowhere:{SERVER}", "hello?")
    assert (raised.value.status, raised.value.errcode) == (404, "M_NOT_FOUND")


async def test_oversized_event_is_too_large(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    with pytest.raises(MatrixError) as raised:
        await send_message(h, room_id, "x" * 70_000)
    assert (raised.value.status, raised.value.errcode) == (413, "M_TOO_LARGE")


async def test_txn_id_retry_returns_the_original_event_even_after_restart(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    txn = ClientTransaction(ALICE, "DEVICE", f"send:{room_id}:m.room.message", "t1")

    first, concurrent_retry = await asyncio.gather(
        send_message(h, room_id, "once", txn=txn), send_message(h, room_id, "once", txn=txn)
    )
    restarted = await make_harness(pool)
    after_restart = await send_message(restarted, room_id, "once", txn=txn)

    assert first.event_id == concurrent_retry.event_id == after_restart.event_id
    assert await pool.fetchval("SELECT count(*) FROM events WHERE txn_id = 't1'") == 1
    assert await h.rooms.get_client_transaction(txn) == f'{{"event_id":"{first.event_id}"}}'


async def test_state_event_changes_current_state_and_state_around_it(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    old = await h.pipeline.create_local_event(room_id, "m.room.topic", ALICE, {"topic": "a"}, "")
    new = await h.pipeline.create_local_event(room_id, "m.room.topic", ALICE, {"topic": "b"}, "")

    current = await h.cache.get_current_state(room_id)
    assert current[("m.room.topic", "")].content["topic"] == "b"
    stored = await h.rooms.get_current_state_ids(room_id)
    assert stored[("m.room.topic", "")] == new.event_id
    cold = await make_harness(pool)
    before = await cold.cache.get_state_before_event(new.event_id)
    after = await cold.cache.get_state_after_event(new.event_id)
    assert before is not None and after is not None
    assert before[("m.room.topic", "")] == old.event_id
    assert after[("m.room.topic", "")] == new.event_id
    assert dict(after) == stored


async def test_join_updates_members_and_wakes_the_joining_user(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    start = h.tracker.current_position
    waiter = asyncio.create_task(h.notifier.wait_for_events(BOB, [], start, 5_000))
    await asyncio.sleep(0)

    join = await h.pipeline.create_local_event(room_id, MEMBER, BOB, {"membership": "join"}, BOB)

    position = await asyncio.wait_for(waiter, 1)
    rows = await h.events.get_event_rows([join.event_id])
    assert position == rows[join.event_id].stream_ordering
    assert await h.rooms.get_members(room_id) == {ALICE: "join", BOB: "join"}
    assert await h.rooms.get_rooms_for_user(BOB) == {room_id}


async def test_redaction_marks_its_target_and_relations_are_recorded(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    message = await send_message(h, room_id, "regrettable")
    reaction = await h.pipeline.create_local_event(
        room_id,
        "m.reaction",
        ALICE,
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": message.event_id, "key": "👍"}},
    )
    redaction = await h.pipeline.create_local_event(
        room_id, "m.room.redaction", ALICE, {"redacts": message.event_id}
    )

    assert redaction.redacts == message.event_id
    rows = await h.events.get_event_rows([message.event_id])
    assert rows[message.event_id].redacted_because == redaction.event_id
    relations = await h.events.get_relations(message.event_id, "m.annotation", 10)
    assert [r.event.event_id for r in relations] == [reaction.event_id]
    assert await h.events.get_redactions_of(message.event_id) == [redaction.event_id]


async def test_explicit_prev_events_fork_the_dag_and_the_next_event_merges_it(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)
    a = await send_message(h, room_id, "a")
    b = await send_message(h, room_id, "b on the side", prev_event_ids=[events[-1].event_id])

    assert await h.rooms.get_forward_extremities(room_id) == {a.event_id, b.event_id}
    merge = await send_message(h, room_id, "merge")
    assert set(merge.prev_event_ids) == {a.event_id, b.event_id}
    assert merge.depth == max(a.depth, b.depth) + 1
    assert await h.rooms.get_forward_extremities(room_id) == {merge.event_id}


def remote_event(
    room_id: str,
    event_type: str,
    content: dict[str, Any],
    prev: Event,
    auth: list[Event],
    state_key: str | None = None,
) -> Event:
    """An event built and signed by remote.test, as it would arrive over federation."""
    pdu: dict[str, Any] = {
        "room_id": room_id,
        "type": event_type,
        "sender": REMOTE_USER,
        "content": content,
        "depth": prev.depth + 1,
        "origin_server_ts": 1,
        "prev_events": [prev.event_id],
        "auth_events": [e.event_id for e in auth],
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    pdu = add_hashes_and_signatures(pdu, V11, "remote.test", REMOTE_KEY)
    event = Event.from_pdu(pdu, V11)
    assert event.event_id == compute_event_id(pdu, V11)
    return event


def remote_join(room_id: str, prev: Event, auth: list[Event]) -> Event:
    return remote_event(room_id, MEMBER, {"membership": "join"}, prev, auth, REMOTE_USER)


async def test_remote_event_goes_through_the_same_persist_path(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)
    state_before = dict(await h.cache.get_current_state_ids(room_id))
    join = remote_join(room_id, events[-1], [events[0], events[2], events[3]])

    position = await h.pipeline.persist_remote_event(join, state_before)
    again = await h.pipeline.persist_remote_event(join, state_before)

    assert position == again == h.tracker.current_position
    assert (await h.rooms.get_members(room_id))[REMOTE_USER] == "join"
    assert await h.rooms.get_forward_extremities(room_id) == {join.event_id}
    message = await send_message(h, room_id, "welcome")
    assert message.prev_event_ids == (join.event_id,)


async def test_soft_failed_remote_event_changes_neither_state_nor_extremities(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)
    state_before = dict(await h.cache.get_current_state_ids(room_id))
    join = remote_join(room_id, events[-1], [events[0], events[2], events[3]])

    await h.pipeline.persist_remote_event(join, state_before, soft_failed=True)

    assert REMOTE_USER not in await h.rooms.get_members(room_id)
    assert await h.rooms.get_forward_extremities(room_id) == {events[-1].event_id}
    rows = await h.events.get_event_rows([join.event_id])
    assert rows[join.event_id].soft_failed and not rows[join.event_id].visible_to_clients


async def test_stream_position_survives_a_restart(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    last = await send_message(h, room_id, "before restart")
    position = (await h.events.get_event_rows([last.event_id]))[last.event_id].stream_ordering

    restarted = await make_harness(pool)
    assert restarted.tracker.current_position == position
    after = await send_message(restarted, room_id, "after restart")
    rows = await restarted.events.get_event_rows([after.event_id])
    assert rows[after.event_id].stream_ordering > position


async def test_room_creation_with_a_forbidden_initial_event_creates_nothing(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    events = [
        NewEvent("m.room.create", ALICE, {}, ""),
        NewEvent(MEMBER, ALICE, {"membership": "join"}, ALICE),
        NewEvent(MEMBER, BOB, {"membership": "join"}, BOB),  # invite-only by default
    ]
    with pytest.raises(MatrixError) as raised:
        await h.pipeline.create_room_events(V11, events)
    assert raised.value.status == 403
    assert await count_rows(pool, "events") == 0
    assert await count_rows(pool, "rooms") == 0


async def test_redaction_received_before_its_target_applies_when_the_target_arrives(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)
    create, power_levels, join_rules = events[0], events[2], events[3]
    join = remote_join(room_id, events[-1], [create, power_levels, join_rules])
    await h.pipeline.persist_remote_event(join, dict(await h.cache.get_current_state_ids(room_id)))
    auth = [create, power_levels, join]
    message = remote_event(room_id, "m.room.message", {"body": "oops"}, join, auth)
    redaction = remote_event(
        room_id, "m.room.redaction", {"redacts": message.event_id}, message, auth
    )
    state = dict(await h.cache.get_current_state_ids(room_id))

    await h.pipeline.persist_remote_event(redaction, state)  # the message is still missing
    await h.pipeline.persist_remote_event(message, state)  # e.g. fetched by get_missing_events

    rows = await h.events.get_event_rows([message.event_id])
    assert rows[message.event_id].redacted_because == redaction.event_id
    # The message already has a child, so it does not become a forward extremity.
    assert await h.rooms.get_forward_extremities(room_id) == {redaction.event_id}


async def test_received_invite_for_a_room_we_are_not_in_reaches_the_invitee(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    remote_room = "!elsewhere:remote.test"
    invite_pdu = {
        "room_id": remote_room,
        "type": MEMBER,
        "state_key": BOB,
        "sender": REMOTE_USER,
        "content": {"membership": "invite"},
        "depth": 5,
        "origin_server_ts": 1,
        "prev_events": ["$" + "A" * 43],
        "auth_events": ["$" + "B" * 43],
    }
    invite = Event.from_pdu(
        add_hashes_and_signatures(invite_pdu, V11, "remote.test", REMOTE_KEY), V11
    )
    waiter = asyncio.create_task(
        h.notifier.wait_for_events(BOB, [], h.tracker.current_position, 5_000)
    )
    await asyncio.sleep(0)

    position = await h.pipeline.persist_remote_event(
        invite, None, outlier=True, out_of_band_membership=True
    )

    assert await asyncio.wait_for(waiter, 1) == position
    [membership] = await h.rooms.get_local_memberships(BOB)
    assert (membership.room_id, membership.membership) == (remote_room, "invite")
    assert await h.rooms.get_current_state_ids(remote_room) == {}
