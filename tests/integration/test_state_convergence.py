"""Conflicting state changes on both sides converge (issue 5 "Tests"; S2S "Room State
Resolution", rooms/v2 "State resolution"): A and B cannot reach each other while alice@A and
bob@B, both at power level 100, each change the topic and the power levels. Once they can,
each server receives the other's fork and both end with the same current state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, cluster
from tests.integration.rooms import (
    create_public_room,
    eventually,
    get_state_content,
    join_via,
    put_state,
    send_text,
    state_of,
    wait_for_same_state,
    wait_until_seen,
)
from tests.integration.test_two_servers import Server, User


@pytest.fixture
async def two(tmp_path: Path, pg_admin_dsn: str, _migrated_template: str) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, pg_admin_dsn, _migrated_template, 2) as running:
        yield running


async def _change_levels(user: User, room_id: str, **levels: Any) -> str:
    content = await get_state_content(user, room_id, "m.room.power_levels")
    content.update(levels)
    return await put_state(user, room_id, "m.room.power_levels", content)


async def _wait_backing_off(server: Server, destination: str) -> None:
    sender = server.deps.federation_sender
    assert sender is not None

    async def backing_off() -> bool:
        return sender.is_backing_off(destination)

    await eventually(backing_off, 10.0)


async def test_both_sides_change_topic_and_power_levels_apart_and_converge(two: Cluster) -> None:
    a, b = two.servers
    alice, bob = await a.register("alice"), await b.register("bob")
    room_id = await create_public_room(alice, topic="before the split")
    await join_via(bob, room_id, a.name)
    levels = await get_state_content(alice, room_id, "m.room.power_levels")
    levels["users"][bob.user_id] = 100
    await put_state(alice, room_id, "m.room.power_levels", levels)
    common = await wait_for_same_state(room_id, alice, bob)

    # The split: each side changes the same state while the other cannot hear it.
    await two.stop(b)
    alice_topic = await put_state(alice, room_id, "m.room.topic", {"topic": "alice's topic"})
    alice_levels = await _change_levels(alice, room_id, invite=10)
    await _wait_backing_off(a, b.name)
    await two.stop(a)
    await two.restart(b)
    bob_topic = await put_state(bob, room_id, "m.room.topic", {"topic": "bob's topic"})
    bob_levels = await _change_levels(bob, room_id, kick=20)
    await _wait_backing_off(b, a.name)
    assert (await state_of(bob, room_id))[("m.room.topic", "")] == bob_topic
    await two.restart(a)
    assert (await state_of(alice, room_id))[("m.room.topic", "")] == alice_topic

    # Each receives the other's fork and resolves the two states: the same answer on both.
    state = await wait_for_same_state(room_id, alice, bob)
    assert state[("m.room.topic", "")] in (alice_topic, bob_topic)
    assert state[("m.room.power_levels", "")] in (alice_levels, bob_levels)
    assert set(state) == set(common)
    for user in (alice, bob):
        assert (await state_of(user, room_id)) == state
        topic = await get_state_content(user, room_id, "m.room.topic")
        assert topic["topic"] in ("alice's topic", "bob's topic")

    # The room goes on from the merged state: new events join the two forks.
    await send_text(alice, room_id, "a1", "after the merge from A")
    await send_text(bob, room_id, "b1", "after the merge from B")
    for user in (alice, bob):
        await wait_until_seen(user, room_id, "after the merge from A", "after the merge from B")
    assert await wait_for_same_state(room_id, alice, bob) == state
