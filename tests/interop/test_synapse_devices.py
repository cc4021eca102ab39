"""Veche ↔ Synapse: restricted joins (each side as the authorising server), device key
queries and to-device messages across servers (fixtures in conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.interop.support import (
    Client,
    Synapse,
    Veche,
    create_room,
    eventually,
    q,
    wait_membership,
    wait_same_state,
)

pytestmark = pytest.mark.interop


def restricted_to(space_id: str) -> dict[str, Any]:
    return {
        "type": "m.room.join_rules",
        "state_key": "",
        "content": {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": space_id}],
        },
    }


async def join_remote(user: Client, room_id: str, server: str) -> None:
    await user.ok("POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(server)}", {})


async def test_restricted_rooms_are_joined_through_membership_both_ways(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice31"), await veche.user("bob31")
    s_space = await create_room(s_alice, preset="public_chat")
    s_room = await create_room(
        s_alice, preset="private_chat", initial_state=[restricted_to(s_space)]
    )
    v_space = await create_room(v_bob, preset="public_chat")
    v_room = await create_room(
        v_bob, preset="private_chat", initial_state=[restricted_to(v_space)]
    )

    # Not a member of the allowed room yet: refused.
    status, _ = await v_bob.call(
        "POST", f"/_matrix/client/v3/join/{q(s_room)}?server_name={q(synapse.name)}", {}
    )
    assert status == 403
    await join_remote(v_bob, s_space, synapse.name)
    await join_remote(v_bob, s_room, synapse.name)
    await wait_membership(s_alice, s_room, v_bob.user_id, "join", synapse.peer)
    await wait_same_state(s_alice, v_bob, s_room, synapse.peer)

    status, _ = await s_alice.call(
        "POST", f"/_matrix/client/v3/join/{q(v_room)}?server_name={q(veche.name)}", {}
    )
    assert status == 403
    await join_remote(s_alice, v_space, veche.name)
    await join_remote(s_alice, v_room, veche.name)
    await wait_membership(v_bob, v_room, s_alice.user_id, "join", synapse.peer)
    await wait_same_state(v_bob, s_alice, v_room, synapse.peer)


async def test_device_keys_of_the_other_server_are_queried(synapse: Synapse, veche: Veche) -> None:
    s_alice, v_bob = await synapse.user("alice32"), await veche.user("bob32")
    answer = await s_alice.ok(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {v_bob.user_id: []}}
    )
    assert veche.name not in answer.get("failures", {}), answer
    answer = await v_bob.ok(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {s_alice.user_id: []}}
    )
    assert synapse.name not in answer.get("failures", {}), answer


async def test_to_device_messages_cross_servers_both_ways(synapse: Synapse, veche: Veche) -> None:
    s_alice, v_bob = await synapse.user("alice33"), await veche.user("bob33")
    await s_alice.ok(
        "PUT",
        "/_matrix/client/v3/sendToDevice/m.interop.test/s1",
        {"messages": {v_bob.user_id: {"*": {"hello": "from synapse"}}}},
    )
    await v_bob.ok(
        "PUT",
        "/_matrix/client/v3/sendToDevice/m.interop.test/v1",
        {"messages": {s_alice.user_id: {"*": {"hello": "from veche"}}}},
    )

    async def received(user: Client, since: list[str], expected: str) -> bool:
        sync = await user.ok("GET", f"/_matrix/client/v3/sync?timeout=300{since[0]}")
        since[0] = f"&since={q(sync['next_batch'])}"
        events = sync.get("to_device", {}).get("events", [])
        return any(e["content"].get("hello") == expected for e in events)

    v_since, s_since = [""], [""]
    await eventually(
        lambda: received(v_bob, v_since, "from synapse"), "to-device on Veche", synapse.peer
    )
    await eventually(
        lambda: received(s_alice, s_since, "from veche"), "to-device on Synapse", synapse.peer
    )
