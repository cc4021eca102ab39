"""An event we hold only as an outlier that then arrives through /send (or
/get_missing_events) with its prev events known becomes part of the timeline: visible, a
forward extremity, and moving the current state (homeserver/services/federation_promote.py)."""

from __future__ import annotations

from typing import Any

from federation.room_versions import V11
from tests.federation_api.conftest import JoinedRoom
from tests.federation_api.support import World
from tests.federation_api.test_transactions import auth_for, message, room_heads, send, stored


async def hold_as_outlier(world: World, room: JoinedRoom, pdu: dict[str, Any]) -> None:
    """Store an event as an outlier, as an auth event fetched with /event_auth would be."""
    inbound = world.deps.federation_inbound
    assert inbound is not None
    held = await inbound.receiver.persist_outliers([pdu], V11, room.room_id)
    assert held, "the outlier was not stored"


async def test_an_outlier_sent_again_joins_the_timeline_and_becomes_the_extremity(
    world: World, joined_room: JoinedRoom
) -> None:
    event_id, pdu = await message(world, joined_room, "first held as an outlier")
    await hold_as_outlier(world, joined_room, pdu)
    row = await stored(world, event_id)
    assert row.outlier and not row.visible_to_clients
    before = world.deps.engine.tracker.current_position

    reply = await send(world, "t-promote", [pdu])
    assert reply.body == {"pdus": {event_id: {}}}
    row = await stored(world, event_id)
    assert not row.outlier and row.visible_to_clients
    assert row.stream_ordering > before
    assert world.deps.engine.tracker.current_position >= row.stream_ordering  # announced
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and room.forward_extremities == {event_id}
    pool = world.deps.pool
    extremities = await pool.fetch(
        "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", joined_room.room_id
    )
    assert [r["event_id"] for r in extremities] == [event_id]

    # The next event builds on it like on any timeline event: no /state request needed.
    next_id, following = await message(world, joined_room, "after it")
    reply = await send(world, "t-after", [following])
    assert reply.body == {"pdus": {next_id: {}}}
    assert "state" not in world.remote.requests
    assert (await stored(world, next_id)).visible_to_clients


async def test_a_promoted_state_event_becomes_current_state(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    event_id, pdu = world.remote.build_event(
        joined_room.room_id,
        "m.room.member",
        joined_room.bob,
        {"membership": "join", "displayname": "Bob (renamed)"},
        state_key=joined_room.bob,
        prev_events=prevs,
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth,
    )
    await hold_as_outlier(world, joined_room, pdu)
    reply = await send(world, "t-promote-state", [pdu])
    assert reply.body == {"pdus": {event_id: {}}}
    key = ("m.room.member", joined_room.bob)
    current = await world.deps.engine.state.get_current_state_ids(joined_room.room_id)
    assert current[key] == event_id
    row = await world.deps.pool.fetchrow(
        "SELECT event_id FROM current_state_events WHERE room_id = $1 AND type = $2"
        " AND state_key = $3",
        joined_room.room_id,
        *key,
    )
    assert row is not None and row["event_id"] == event_id
    assert (await stored(world, event_id)).visible_to_clients


async def test_an_event_already_in_the_timeline_is_left_alone(
    world: World, joined_room: JoinedRoom
) -> None:
    event_id, pdu = await message(world, joined_room, "sent twice")
    assert (await send(world, "t-once", [pdu])).body == {"pdus": {event_id: {}}}
    position = (await stored(world, event_id)).stream_ordering
    assert (await send(world, "t-twice", [pdu])).body == {"pdus": {event_id: {}}}
    assert (await stored(world, event_id)).stream_ordering == position


async def test_an_outlier_forking_from_older_events_becomes_a_second_extremity(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    main_id, main = await message(world, joined_room, "on the main line")
    assert (await send(world, "t-main", [main])).body == {"pdus": {main_id: {}}}
    fork_id, fork = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "beside it"},
        prev_events=prevs,
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth,
    )
    await hold_as_outlier(world, joined_room, fork)
    assert (await send(world, "t-fork", [fork])).body == {"pdus": {fork_id: {}}}
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and room.forward_extremities == {main_id, fork_id}
    assert (await stored(world, fork_id)).visible_to_clients


async def test_an_outlier_arriving_through_get_missing_events_joins_the_timeline(
    world: World, joined_room: JoinedRoom
) -> None:
    held_id, held = await message(world, joined_room, "held as an outlier, then missing")
    await hold_as_outlier(world, joined_room, held)
    _prevs, ids, depth = await room_heads(world, joined_room.room_id)
    next_id, following = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "its child"},
        prev_events=[held_id],
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth + 1,
    )
    assert (await send(world, "t-child", [following])).body == {"pdus": {next_id: {}}}
    assert "get_missing_events" in world.remote.requests
    assert "state" not in world.remote.requests  # the promoted outlier gave the state
    assert (await stored(world, held_id)).visible_to_clients
    assert (await stored(world, next_id)).visible_to_clients
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and room.forward_extremities == {next_id}


async def test_an_outlier_whose_prev_events_are_unknown_stays_an_outlier(
    world: World, joined_room: JoinedRoom
) -> None:
    gap_id, _gap = await message(world, joined_room, "never sent to us")
    _prevs, ids, depth = await room_heads(world, joined_room.room_id)
    held_id, held = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "after a gap"},
        prev_events=[gap_id],
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth + 1,
    )
    await hold_as_outlier(world, joined_room, held)
    assert (await send(world, "t-gap-outlier", [held])).body == {"pdus": {held_id: {}}}
    assert (await stored(world, held_id)).outlier
    assert await stored(world, gap_id) is None
    assert not {"state", "get_missing_events"} & set(world.remote.requests)
