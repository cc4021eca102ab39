"""Saving backfilled events (S2S "Backfilling and retrieving missing events"): step 5 against
the state before each, negative stream positions that no stream reader (/sync, the federation
sender, push) treats as new, and the room's current state and extremities left alone."""

from __future__ import annotations

from collections.abc import Sequence

from federation.pdu import Event
from federation.room_versions import V11
from homeserver.services.tokens import TopologicalToken, parse_room_token
from homeserver.storage.federation_outbound import FederationOutboundStore
from tests.federation_api.conftest import JoinedRoom
from tests.federation_api.support import World
from tests.federation_api.test_backfill_fetch import RecordingRequester, backfiller
from tests.federation_api.test_transactions import auth_for, room_heads


async def two_unsent_messages(world: World, room: JoinedRoom) -> list[Event]:
    """bob's m1 then m2 (m2 after m1), built on the room's heads but never sent to us."""
    prevs, ids, depth = await room_heads(world, room.room_id)
    events = []
    for index in range(2):
        event_id, pdu = world.remote.build_event(
            room.room_id,
            "m.room.message",
            room.bob,
            {"msgtype": "m.text", "body": f"m{index + 1}"},
            prev_events=prevs,
            auth_events=auth_for(ids, room.bob),
            depth=depth + index,
        )
        events.append(Event.from_pdu(pdu, V11, event_id=event_id))
        prevs = [event_id]
    return events


async def test_backfilled_events_take_negative_positions_no_stream_reader_sees(
    world: World, joined_room: JoinedRoom
) -> None:
    deps = world.deps
    engine, room_id = deps.engine, joined_room.room_id
    room_before = await engine.state.get_room_state(room_id)
    assert room_before is not None
    hooked: list[Sequence[Event]] = []

    async def hook(events: Sequence[Event]) -> None:
        hooked.append(events)

    engine.pipeline.add_persisted_hook(hook)
    max_before = await engine.events.get_max_stream_ordering()
    notified_before = engine.notifier.current_position
    events = await two_unsent_messages(world, joined_room)

    saved = await backfiller(world, RecordingRequester({})).save(
        world.remote.server_name, room_id, events
    )

    assert saved == [e.event_id for e in events]
    rows = await engine.events.get_event_rows(saved)
    m1, m2 = rows[saved[0]], rows[saved[1]]
    assert m1.visible_to_clients and m2.visible_to_clients
    assert m1.stream_ordering < m2.stream_ordering < 0  # the older, the more negative
    # Nobody is told: no hook (federation sender, push), no /sync wake-up.
    assert hooked == []
    assert engine.notifier.current_position == notified_before
    assert not engine.notifier.has_new_events(joined_room.bob, [room_id], notified_before)
    # Stream readers start at non-negative tokens and never reach them.
    assert await engine.events.get_max_stream_ordering() == max_before
    in_range = await engine.events.get_room_events_in_range(room_id, 0, max_before, 100)
    assert not {r.event.event_id for r in in_range} & set(saved)
    assert await engine.events.get_room_ids_with_events_between([room_id], 0, max_before) == {
        room_id: max_before
    }
    outbound = FederationOutboundStore(deps.pool)
    sendable = await outbound.get_local_events(0, max_before, world.remote.server_name, 100)
    assert not {e.event_id for e in sendable} & set(saved)
    # The room's present is untouched: they are (treated as) older than it.
    room_after = await engine.state.get_room_state(room_id)
    assert room_after is not None
    assert room_after.forward_extremities == room_before.forward_extremities
    assert dict(room_after.state) == dict(room_before.state)
    extremities = await deps.pool.fetch(
        "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
    )
    assert {r["event_id"] for r in extremities} == set(room_before.forward_extremities)
    # Their state is known (step 5 ran against it) and /messages orders them by depth.
    assert await engine.state.get_state_before_event(saved[1]) is not None
    page = await engine.events.paginate_room_events(room_id, None, "b", 3)
    assert [r.event.event_id for r in page][:2] == [saved[1], saved[0]]


async def test_a_backfilled_event_failing_the_state_before_it_is_stored_rejected(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    stranger = world.remote.user("stranger")  # never joined: the state before it says so
    event_id, pdu = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        stranger,
        {"msgtype": "m.text", "body": "not a member"},
        prev_events=prevs,
        auth_events=[ids["m.room.create|"], ids["m.room.power_levels|"]],
        depth=depth,
    )
    event = Event.from_pdu(pdu, V11, event_id=event_id)
    filler = backfiller(world, RecordingRequester({}))

    await filler.save(world.remote.server_name, joined_room.room_id, [event])

    row = (await world.deps.engine.events.get_event_rows([event_id]))[event_id]
    assert row.rejection_reason is not None
    assert row.stream_ordering < 0


def test_topological_tokens_carry_negative_stream_positions() -> None:
    token = TopologicalToken(17, -5)
    assert str(token) == "t17--5"
    assert parse_room_token(str(token)) == token
