"""PUT /send/{txnId}: the PDUs of one room in one transaction are stored together, and each
still gets the result it would get alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from federation.room_versions import V11
from homeserver.remote.keyring import KeyUnavailableError
from homeserver.services import event_pipeline, remote_batch
from homeserver.services.federation_inbound_batch import TransactionKeyring
from homeserver.services.state import LruCache
from tests.federation_api.conftest import JoinedRoom
from tests.federation_api.support import World
from tests.federation_api.test_transactions import auth_for, room_heads, send, stored


def chain(
    world: World,
    room: JoinedRoom,
    ids: dict[str, str],
    prevs: Sequence[str],
    depth: int,
    texts: Sequence[str],
) -> list[tuple[str, dict[str, Any]]]:
    """Messages of bob, each on the previous one (the first on `prevs`)."""
    built: list[tuple[str, dict[str, Any]]] = []
    for offset, text in enumerate(texts):
        event_id, pdu = world.remote.build_event(
            room.room_id,
            "m.room.message",
            room.bob,
            {"msgtype": "m.text", "body": text},
            prev_events=[built[-1][0]] if built else list(prevs),
            auth_events=auth_for(ids, room.bob),
            depth=depth + offset,
        )
        built.append((event_id, pdu))
    return built


def count_persists(world: World, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of events in each persist transaction from now on."""
    events = world.deps.engine.events
    original = events.persist
    sizes: list[int] = []

    async def persist(batch: Any) -> None:
        sizes.append(len(batch.events))
        await original(batch)

    monkeypatch.setattr(events, "persist", persist)
    return sizes


async def test_a_transactions_pdus_are_stored_in_one_commit_and_a_forged_one_fails_alone(
    world: World, joined_room: JoinedRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    (id1, m1), (id2, m2), (id3, m3) = chain(world, joined_room, ids, prevs, depth, "abc")
    forged_id, forged = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "forged"},
        prev_events=[id1],
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth + 1,
    )
    key_id = next(iter(forged["signatures"][world.remote.server_name]))
    forged["signatures"][world.remote.server_name][key_id] = "A" * 86
    sizes = count_persists(world, monkeypatch)
    reply = await send(world, "t-batch", [m1, forged, m2, m3])
    assert reply.status == 200
    assert reply.body["pdus"][id1] == reply.body["pdus"][id2] == reply.body["pdus"][id3] == {}
    assert "signature" in reply.body["pdus"][forged_id]["error"]
    assert sizes == [3]
    for event_id in (id1, id2, id3):
        assert (await stored(world, event_id)).visible_to_clients
    assert await stored(world, forged_id) is None
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and room.forward_extremities == {id3}


async def test_a_rejected_pdu_inside_a_batch_is_stored_rejected_and_its_successor_accepted(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    ((id1, m1),) = chain(world, joined_room, ids, prevs, depth, ["before"])
    power_id, power = world.remote.build_event(
        joined_room.room_id,
        "m.room.power_levels",
        joined_room.bob,
        {"users": {joined_room.bob: 100}},
        prev_events=[id1],
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth + 1,
        state_key="",
    )
    ((id3, m3),) = chain(world, joined_room, ids, [power_id], depth + 2, ["after"])
    reply = await send(world, "t-batch-rejected", [m1, power, m3])
    assert reply.body["pdus"][power_id]["error"].startswith("rejected")
    assert reply.body["pdus"][id1] == reply.body["pdus"][id3] == {}
    assert (await stored(world, power_id)).rejection_reason is not None
    assert (await stored(world, id3)).visible_to_clients
    current = await world.deps.engine.state.get_current_state_ids(joined_room.room_id)
    assert current[("m.room.power_levels", "")] == ids["m.room.power_levels|"]


async def test_a_leave_earlier_in_the_transaction_rejects_the_senders_later_message(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    leave_id, leave = world.remote.build_event(
        joined_room.room_id,
        "m.room.member",
        joined_room.bob,
        {"membership": "leave"},
        prev_events=prevs,
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth,
        state_key=joined_room.bob,
    )
    # Its listed auth events still name bob's join, but the state before it (after the leave,
    # still only in the batch) does not let bob send.
    ((message_id, message),) = chain(world, joined_room, ids, [leave_id], depth + 1, ["gone"])
    reply = await send(world, "t-batch-leave", [leave, message])
    assert reply.body["pdus"][leave_id] == {}
    assert reply.body["pdus"][message_id]["error"].startswith("rejected")
    current = await world.deps.engine.state.get_current_state_ids(joined_room.room_id)
    assert current[("m.room.member", joined_room.bob)] == leave_id


async def test_a_prev_event_we_lack_is_fetched_after_the_batch_before_it_is_stored(
    world: World, joined_room: JoinedRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    built = chain(world, joined_room, ids, prevs, depth, ["sent", "never sent", "after gap"])
    (id1, m1), (id2, _), (id3, m3) = built
    sizes = count_persists(world, monkeypatch)
    reply = await send(world, "t-batch-gap", [m1, m3])
    assert reply.body == {"pdus": {id1: {}, id3: {}}}
    assert "get_missing_events" in world.remote.requests
    for event_id in (id1, id2, id3):
        assert (await stored(world, event_id)).visible_to_clients
    assert sizes == [1, 1, 1]  # the batch with m1, then the fetched m2, then m3 alone
    room = await world.deps.engine.state.get_room_state(joined_room.room_id)
    assert room is not None and room.forward_extremities == {id3}


async def test_a_pdu_repeated_in_a_transaction_is_stored_once(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    ((event_id, pdu),) = chain(world, joined_room, ids, prevs, depth, ["twice"])
    reply = await send(world, "t-batch-twice", [pdu, dict(pdu)])
    assert reply.body == {"pdus": {event_id: {}}}
    assert (await stored(world, event_id)).visible_to_clients


async def test_when_a_batch_commit_fails_each_pdu_is_processed_alone(
    world: World, joined_room: JoinedRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = remote_batch.RemoteBatch.commit
    failures = [RuntimeError("database went away")]

    async def commit_failing_once(self: remote_batch.RemoteBatch) -> dict[str, int]:
        if failures:
            raise failures.pop()
        return await original(self)

    monkeypatch.setattr(remote_batch.RemoteBatch, "commit", commit_failing_once)
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    (id1, m1), (id2, m2) = chain(world, joined_room, ids, prevs, depth, ["one", "two"])
    sizes = count_persists(world, monkeypatch)
    reply = await send(world, "t-batch-broken", [m1, m2])
    assert reply.body == {"pdus": {id1: {}, id2: {}}}
    assert not failures and sizes == [1, 1]
    for event_id in (id1, id2):
        assert (await stored(world, event_id)).visible_to_clients


async def test_an_unexpected_failure_leaves_the_transaction_unremembered_for_a_retry(
    world: World, joined_room: JoinedRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = remote_batch.RemoteBatch.commit

    async def broken_commit(self: remote_batch.RemoteBatch) -> dict[str, int]:
        raise RuntimeError("database went away")

    monkeypatch.setattr(remote_batch.RemoteBatch, "commit", broken_commit)
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    (id1, m1), (id2, m2) = chain(world, joined_room, ids, prevs, depth, ["one", "two"])
    reply = await send(world, "t-batch-down", [m1, m2])
    assert reply.body["pdus"][id1]["error"] == "internal error processing this event"
    assert await stored(world, id1) is None
    monkeypatch.setattr(remote_batch.RemoteBatch, "commit", original)
    retry = await send(world, "t-batch-down", [m1, m2])
    assert retry.body == {"pdus": {id1: {}, id2: {}}}


class CountingKeyring:
    def __init__(self, valid_until: int) -> None:
        self.valid_until = valid_until
        self.calls: list[int] = []

    async def get_verify_key(self, server_name: str, key_id: str, minimum: int) -> bytes:
        self.calls.append(minimum)
        if minimum > self.valid_until:
            raise KeyUnavailableError("expired")
        return b"k" * 32


async def test_a_key_valid_for_the_latest_pdu_is_looked_up_once_per_transaction() -> None:
    inner = CountingKeyring(valid_until=2_000)
    keyring = TransactionKeyring(inner)
    pdus = [
        {"sender": "@a:remote", "origin_server_ts": ts, "signatures": {"remote": {"ed25519:k": ""}}}
        for ts in (1_000, 1_500, 1_900)
    ]
    await keyring.prefetch(pdus, V11)
    for ts in (1_000, 1_500, 1_900):
        assert await keyring.get_verify_key("remote", "ed25519:k", ts) == b"k" * 32
    assert inner.calls == [1_900]
    with pytest.raises(KeyUnavailableError):
        await keyring.get_verify_key("remote", "ed25519:k", 2_500)  # past what was seen valid
    assert inner.calls == [1_900, 2_500]


async def test_a_pdu_citing_an_auth_event_rejected_earlier_is_rejected(
    world: World, joined_room: JoinedRoom
) -> None:
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    power_id, power = world.remote.build_event(
        joined_room.room_id,
        "m.room.power_levels",
        joined_room.bob,
        {"users": {joined_room.bob: 100}},
        prev_events=prevs,
        auth_events=auth_for(ids, joined_room.bob),
        depth=depth,
        state_key="",
    )
    first = await send(world, "t-rejected-first", [power])
    assert first.body["pdus"][power_id]["error"].startswith("rejected")
    # As after a restart: the rejection is read back from storage, not remembered.
    inbound = world.deps.federation_inbound
    assert inbound is not None
    inbound.receiver._rejected = LruCache(10)
    citing = {**ids, "m.room.power_levels|": power_id}
    later_id, later = world.remote.build_event(
        joined_room.room_id,
        "m.room.message",
        joined_room.bob,
        {"msgtype": "m.text", "body": "cites a rejected event"},
        prev_events=[power_id],
        auth_events=auth_for(citing, joined_room.bob),
        depth=depth + 1,
    )
    reply = await send(world, "t-rejected-later", [later])
    assert reply.body["pdus"][later_id]["error"].startswith("rejected")
    assert (await stored(world, later_id)).rejection_reason is not None


async def test_when_batches_cannot_be_opened_each_pdu_fails_alone_without_hanging(
    world: World, joined_room: JoinedRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def open_failing(**kwargs: Any) -> remote_batch.RemoteBatch:
        raise RuntimeError("no connection")

    monkeypatch.setattr(event_pipeline, "open_remote_batch", open_failing)
    prevs, ids, depth = await room_heads(world, joined_room.room_id)
    (id1, m1), (id2, m2) = chain(world, joined_room, ids, prevs, depth, ["one", "two"])
    reply = await asyncio.wait_for(send(world, "t-batch-no-open", [m1, m2]), 30)
    for event_id in (id1, id2):
        assert reply.body["pdus"][event_id]["error"] == "internal error processing this event"
        assert await stored(world, event_id) is None
