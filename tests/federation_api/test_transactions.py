"""PUT /send/{txnId}: the receipt checks on each PDU, EDUs, and durable idempotency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from homeserver.services import federation_fetch, federation_transactions
from tests.federation_api.conftest import ALICE, JoinedRoom, create_room
from tests.federation_api.support import World, now_ms, path_of

SEND = "/_matrix/federation/v1/send/{}"


async def room_heads(world: World, room_id: str) -> tuple[list[str], dict[str, str], int]:
    """`(forward extremities, auth event IDs for a member's message, next depth)`."""
    state = world.deps.engine.state
    room = await state.get_room_state(room_id)
    assert room is not None
    prevs = sorted(room.forward_extremities)
    depth = max(e.depth for e in (await state.get_events(prevs)).values()) + 1
    ids = {f"{t}|{k}": v for (t, k), v in room.state.items()}
    return prevs, ids, depth


def auth_for(ids: dict[str, str], sender: str) -> list[str]:
    return [ids["m.room.create|"], ids["m.room.power_levels|"], ids[f"m.room.member|{sender}"]]


async def send(world: World, txn_id: str, pdus: list[Any], edus: list[Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "origin": world.remote.server_name,
        "origin_server_ts": now_ms(),
        "pdus": pdus,
    }
    if edus is not None:
        body["edus"] = edus
    return await world.remote.call(world.federation_url, "PUT", path_of(SEND, txn_id), body)


async def message(world: World, room: JoinedRoom, text: str, **extra: Any) -> tuple[str, Any]:
    prevs, ids, depth = await room_heads(world, room.room_id)
    return world.remote.build_event(
        room.room_id,
        "m.room.message",
        room.bob,
        {"msgtype": "m.text", "body": text, **extra},
        prev_events=prevs,
        auth_events=auth_for(ids, room.bob),
        depth=depth,
    )


async def stored(world: World, event_id: str) -> Any:
    return (await world.deps.engine.events.get_event_rows([event_id])).get(event_id)


async def test_a_remote_members_message_is_persisted_and_shown_in_the_room(
    world: World, joined_room: JoinedRoom
) -> None:
    event_id, pdu = await message(world, joined_room, "hello")
    reply = await send(world, "t1", [pdu])
    assert reply.status == 200, reply.body
    assert reply.body == {"pdus": {event_id: {}}}
    row = await stored(world, event_id)
    assert row.visible_to_clients
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and room.forward_extremities == {event_id}


async def test_a_forged_signature_drops_the_pdu(world: World, joined_room: JoinedRoom) -> None:
    _, pdu = await message(world, joined_room, "forged")
    pdu["content"]["body"] = "changed after signing"
    pdu["hashes"] = {"sha256": "A" * 43}  # hash aside, the signature no longer matches
    signatures = pdu["signatures"][world.remote.server_name]
    key_id = next(iter(signatures))
    signatures[key_id] = "A" * 86
    reply = await send(world, "t-forged", [pdu])
    assert reply.status == 200
    (result,) = reply.body["pdus"].values()
    assert "signature" in result["error"]
    assert await stored(world, next(iter(reply.body["pdus"]))) is None


async def test_a_wrong_content_hash_stores_the_event_redacted(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    pdu = {
        "room_id": joined_room.room_id,
        "type": "m.room.message",
        "sender": joined_room.bob,
        "content": {"msgtype": "m.text", "body": "original"},
        "prev_events": prevs,
        "auth_events": auth_for(ids, joined_room.bob),
        "depth": depth,
        "origin_server_ts": now_ms(),
    }
    event_id, signed = world.remote.sign_event(pdu)
    # The content changes but the (redacted-form) signature stays valid: a bad content hash.
    signed["content"] = {"msgtype": "m.text", "body": "tampered"}
    reply = await send(world, "t-hash", [signed])
    assert reply.body == {"pdus": {event_id: {}}}
    row = await stored(world, event_id)
    assert row.event.content == {}


async def test_an_unauthorized_state_change_is_rejected(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    event_id, pdu = world.remote.build_event(
        joined_room.room_id,
        "m.room.power_levels",
        joined_room.bob,
        {"users": {joined_room.bob: 100}},
        prev_events=prevs,
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth,
        state_key="",
    )
    reply = await send(world, "t-pl", [pdu])
    assert reply.body["pdus"][event_id]["error"].startswith("rejected")
    row = await stored(world, event_id)
    assert row.rejection_reason is not None
    current = await world.deps.engine.state.get_current_state_ids(joined_room.room_id)
    assert current[("m.room.power_levels", "")] != event_id


async def test_an_event_citing_auth_events_of_another_room_is_rejected(
    world: World, joined_room: JoinedRoom
) -> None:
    other_room = await create_room(world)
    other_state = await world.deps.engine.state.get_current_state_ids(other_room)
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    event_id, pdu = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "sneaky"},
        prev_events=prevs,
        auth_events=[
            other_state[("m.room.create", "")],
            other_state[("m.room.power_levels", "")],
            ids[f"m.room.member|{joined_room.bob}"],
        ],
        depth=depth,
    )
    reply = await send(world, "t-other-room", [pdu])
    assert "rejected" in reply.body["pdus"][event_id]["error"]
    assert (await stored(world, event_id)).rejection_reason is not None


async def test_an_oversized_pdu_is_dropped_and_the_others_kept(
    world: World, joined_room: JoinedRoom
) -> None:
    big_id, big = await message(world, joined_room, "x" * 70_000)
    reply = await send(world, "t-big", [big])
    assert "bytes" in reply.body["pdus"][big_id]["error"]
    assert await stored(world, big_id) is None
    ok_id, ok = await message(world, joined_room, "small")
    reply = await send(world, "t-small", [ok])
    assert reply.body["pdus"] == {ok_id: {}}


async def test_a_transaction_retry_gets_the_same_response_without_reprocessing(
    world: World, joined_room: JoinedRoom
) -> None:
    first_id, first = await message(world, joined_room, "once")
    reply = await send(world, "t-retry", [first])
    second_id, second = await message(world, joined_room, "not processed")
    retry = await send(world, "t-retry", [second])
    assert retry.status == 200
    assert retry.body == reply.body == {"pdus": {first_id: {}}}
    assert await stored(world, second_id) is None


async def test_too_many_pdus_is_a_bad_request(world: World, joined_room: JoinedRoom) -> None:
    _, pdu = await message(world, joined_room, "many")
    reply = await send(world, "t-many", [pdu] * 51)
    assert reply.status == 400
    assert reply.body["errcode"] == "M_BAD_JSON"


async def test_a_missing_prev_event_is_fetched_with_get_missing_events(
    world: World, joined_room: JoinedRoom
) -> None:
    first_id, _first = await message(world, joined_room, "never sent to us")
    _prevs, ids, depth = await room_heads(world, joined_room.room_id)
    second_id, second = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "after the gap"},
        prev_events=[first_id],
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth + 1,
    )
    reply = await send(world, "t-gap", [second])
    assert reply.body == {"pdus": {second_id: {}}}
    assert "get_missing_events" in world.remote.requests
    assert (await stored(world, first_id)).visible_to_clients
    assert (await stored(world, second_id)).visible_to_clients


async def test_fetches_from_an_origin_that_stopped_answering_are_bounded(
    world: World, joined_room: JoinedRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scaled down: each fetch may take 1 s, all of a transaction's fetches 1.4 s together.
    monkeypatch.setattr(federation_fetch, "REQUEST_TIMEOUT_S", 1.0)
    monkeypatch.setattr(federation_transactions, "TRANSACTION_FETCH_BUDGET_S", 1.4)
    first_id, _first = await message(world, joined_room, "never sent to us")
    _prevs, ids, depth = await room_heads(world, joined_room.room_id)
    second_id, second = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "after the gap"},
        prev_events=[first_id],
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth + 1,
    )
    world.remote.stalled = asyncio.Event()
    started = time.monotonic()
    try:
        reply = await send(world, "t-dead-origin", [second])
    finally:
        world.remote.stalled.set()
    elapsed = time.monotonic() - started
    # get_missing_events (1 s) and then /state (the 0.4 s left) gave up; without the budget
    # this takes 2 s or more.
    assert elapsed < 1.9, elapsed
    fetches = [r for r in world.remote.requests if r != "keys"]
    assert fetches == ["get_missing_events", "state"]
    assert "unavailable" in reply.body["pdus"][second_id]["error"]
    assert await stored(world, second_id) is None


async def test_typing_edus_count_only_for_the_senders_own_users(
    world: World, joined_room: JoinedRoom
) -> None:
    typing = world.deps.sync.typing
    room_id = joined_room.room_id
    edus = [
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": ALICE, "typing": True}},
        {
            "edu_type": "m.typing",
            "content": {"room_id": room_id, "user_id": joined_room.bob, "typing": True},
        },
        {"edu_type": "m.typing", "content": {"room_id": room_id}},  # malformed: dropped alone
    ]
    reply = await send(world, "t-edu", [], edus)
    assert reply.status == 200
    assert reply.body == {"pdus": {}}
    assert typing.typing_users(room_id) == [joined_room.bob]


async def test_an_event_evading_a_ban_from_before_it_is_soft_failed(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    await world.deps.engine.pipeline.create_local_event(
        joined_room.room_id, "m.room.member", ALICE, {"membership": "ban"}, joined_room.bob
    )
    # Bob's server builds on the DAG as it was before the ban.
    event_id, pdu = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "evading"},
        prev_events=prevs,
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth,
    )
    reply = await send(world, "t-soft", [pdu])
    assert reply.body == {"pdus": {event_id: {}}}
    row = await stored(world, event_id)
    assert row.soft_failed and not row.visible_to_clients
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and event_id not in room.forward_extremities
