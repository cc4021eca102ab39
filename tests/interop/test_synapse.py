"""Veche ↔ Synapse federation on loopback, both directions (issue 5, "Interop with Synapse").

A real Synapse (tests/interop/synapse_peer.py) and a real Veche (in this process, TLS on its
federation listener, named `localhost:<federation port>`) share rooms: a Veche user joins a
Synapse room by ID and by alias, a Synapse user joins a Veche room, an invited Synapse user
accepts, members are kicked and banned; messages and state changes flow both ways and both
servers end with the same room state.

Without VECHE_INTEROP=1 the tests are skipped when Synapse cannot be installed or started;
with it (as in CI, `make interop`) that is an error.
"""

from __future__ import annotations

import pytest

from tests.interop.support import (
    Synapse,
    Veche,
    create_room,
    eventually,
    grant_power,
    q,
    send_text,
    set_state,
    wait_membership,
    wait_message,
    wait_power,
    wait_same_state,
    wait_state,
)

pytestmark = pytest.mark.interop


# --- a Veche user in a Synapse room ---------------------------------------------------------


async def test_a_veche_user_joins_a_synapse_room_by_id_and_they_talk(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice1"), await veche.user("bob1")
    room_id = await create_room(s_alice, preset="public_chat", name="Synapse side")

    joined = await v_bob.ok(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(synapse.name)}", {}
    )
    assert joined["room_id"] == room_id
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)
    assert (await v_bob.ok("GET", "/_matrix/client/v3/joined_rooms"))["joined_rooms"] == [room_id]

    await send_text(s_alice, room_id, "hello from Synapse")
    await wait_message(v_bob, room_id, "hello from Synapse", synapse.peer)
    await send_text(v_bob, room_id, "hello from Veche")
    await wait_message(s_alice, room_id, "hello from Veche", synapse.peer)

    await set_state(s_alice, room_id, "m.room.name", {"name": "Renamed on Synapse"})
    await wait_state(v_bob, room_id, "m.room.name", "name", "Renamed on Synapse", synapse.peer)
    await grant_power(s_alice, room_id, v_bob.user_id, 50)
    await wait_power(v_bob, room_id, v_bob.user_id, 50, synapse.peer)
    await set_state(v_bob, room_id, "m.room.topic", {"topic": "set on Veche"})
    await wait_state(s_alice, room_id, "m.room.topic", "topic", "set on Veche", synapse.peer)

    await wait_same_state(s_alice, v_bob, room_id, synapse.peer)

    await v_bob.ok("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    await wait_membership(s_alice, room_id, v_bob.user_id, "leave", synapse.peer)


async def test_a_veche_user_joins_a_synapse_room_by_alias(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice2"), await veche.user("bob2")
    room_id = await create_room(s_alice, preset="public_chat", room_alias_name="interop")
    alias = f"#interop:{synapse.name}"

    joined = await v_bob.ok("POST", f"/_matrix/client/v3/join/{q(alias)}", {})
    assert joined["room_id"] == room_id
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)

    await send_text(v_bob, room_id, "joined by alias")
    await wait_message(s_alice, room_id, "joined by alias", synapse.peer)
    await wait_same_state(s_alice, v_bob, room_id, synapse.peer)


# --- Synapse users in a Veche room ----------------------------------------------------------


async def test_synapse_users_join_a_veche_room_talk_and_are_kicked_and_banned(
    synapse: Synapse, veche: Veche
) -> None:
    v_alice = await veche.user("alice3")
    s_bob, s_carol = await synapse.user("bob3"), await synapse.user("carol3")
    room_id = await create_room(v_alice, preset="public_chat", name="Veche side")

    joined = await s_bob.ok(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(veche.name)}", {}
    )
    assert joined["room_id"] == room_id
    await wait_membership(v_alice, room_id, s_bob.user_id, "join", synapse.peer)

    await send_text(v_alice, room_id, "hello from Veche")
    await wait_message(s_bob, room_id, "hello from Veche", synapse.peer)
    await send_text(s_bob, room_id, "hello from Synapse")
    await wait_message(v_alice, room_id, "hello from Synapse", synapse.peer)

    await set_state(v_alice, room_id, "m.room.name", {"name": "Renamed on Veche"})
    await wait_state(s_bob, room_id, "m.room.name", "name", "Renamed on Veche", synapse.peer)
    await grant_power(v_alice, room_id, s_bob.user_id, 50)
    await wait_power(s_bob, room_id, s_bob.user_id, 50, synapse.peer)
    await set_state(s_bob, room_id, "m.room.topic", {"topic": "set on Synapse"})
    await wait_state(v_alice, room_id, "m.room.topic", "topic", "set on Synapse", synapse.peer)

    # An invite from Veche to a second Synapse user, accepted.
    await v_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": s_carol.user_id}
    )

    since = ""  # Synapse caches /sync answers per request: follow next_batch

    async def carol_invited() -> bool:
        nonlocal since
        sync = await s_carol.ok("GET", f"/_matrix/client/v3/sync?timeout=500{since}")
        since = f"&since={q(sync['next_batch'])}"
        return room_id in sync.get("rooms", {}).get("invite", {})

    await eventually(carol_invited, "the invite in carol's /sync on Synapse", synapse.peer)
    await s_carol.ok("POST", f"/_matrix/client/v3/join/{q(room_id)}", {})
    await wait_membership(v_alice, room_id, s_carol.user_id, "join", synapse.peer)
    await send_text(s_carol, room_id, "carol is here")
    await wait_message(v_alice, room_id, "carol is here", synapse.peer)

    # Membership changes made on Veche reach Synapse.
    await v_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/kick", {"user_id": s_carol.user_id}
    )
    await wait_membership(s_bob, room_id, s_carol.user_id, "leave", synapse.peer)
    await v_alice.ok(
        "POST",
        f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
        {"user_id": s_carol.user_id, "reason": "interop"},
    )
    await wait_membership(s_bob, room_id, s_carol.user_id, "ban", synapse.peer)

    await wait_same_state(v_alice, s_bob, room_id, synapse.peer)


async def test_a_synapse_user_leaves_a_veche_room(synapse: Synapse, veche: Veche) -> None:
    v_alice, s_bob = await veche.user("alice4"), await synapse.user("bob4")
    room_id = await create_room(v_alice, preset="public_chat")
    await s_bob.ok(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(veche.name)}", {}
    )
    await wait_membership(v_alice, room_id, s_bob.user_id, "join", synapse.peer)

    await s_bob.ok("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    await wait_membership(v_alice, room_id, s_bob.user_id, "leave", synapse.peer)


# --- membership driven from Synapse, aliases of Veche, other room versions -------------------


async def test_a_synapse_user_invites_kicks_and_bans_a_veche_user(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice = await synapse.user("alice5")
    v_bob, v_dan = await veche.user("bob5"), await veche.user("dan5")
    room_id = await create_room(s_alice, preset="private_chat", name="Invite only")

    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": v_bob.user_id}
    )

    async def bob_invited() -> bool:
        sync = await v_bob.ok("GET", "/_matrix/client/v3/sync?timeout=0")
        return room_id in sync.get("rooms", {}).get("invite", {})

    await eventually(bob_invited, "the invite in bob's /sync on Veche", synapse.peer)
    await v_bob.ok("POST", f"/_matrix/client/v3/join/{q(room_id)}", {})
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)

    # A second invitee on Veche declines.
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": v_dan.user_id}
    )
    await wait_membership(v_bob, room_id, v_dan.user_id, "invite", synapse.peer)
    await v_dan.ok("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    await wait_membership(s_alice, room_id, v_dan.user_id, "leave", synapse.peer)

    await send_text(s_alice, room_id, "about to kick")
    await wait_message(v_bob, room_id, "about to kick", synapse.peer)
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/kick", {"user_id": v_bob.user_id}
    )

    async def bob_left() -> bool:
        include_leave = q('{"room": {"include_leave": true}}')
        sync = await v_bob.ok("GET", f"/_matrix/client/v3/sync?timeout=0&filter={include_leave}")
        return room_id in sync.get("rooms", {}).get("leave", {})

    await eventually(bob_left, "the kick in bob's /sync on Veche", synapse.peer)
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/ban", {"user_id": v_bob.user_id}
    )
    await wait_membership(s_alice, room_id, v_bob.user_id, "ban", synapse.peer)
    status, _ = await v_bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(synapse.name)}", {}
    )
    assert status == 403


async def test_a_synapse_user_joins_a_veche_room_by_alias_and_sees_it_in_sync(
    synapse: Synapse, veche: Veche
) -> None:
    v_alice, s_bob = await veche.user("alice6"), await synapse.user("bob6")
    room_id = await create_room(v_alice, preset="public_chat", room_alias_name="vecheroom")

    joined = await s_bob.ok("POST", f"/_matrix/client/v3/join/{q('#vecheroom:' + veche.name)}", {})
    assert joined["room_id"] == room_id
    await send_text(v_alice, room_id, "welcome")

    # Synapse caches a /sync answer per request for a while (sync_response_cache_duration):
    # follow next_batch as a client does.
    since = ""
    bodies: list[str] = []

    async def in_sync() -> bool:
        nonlocal since
        sync = await s_bob.ok("GET", f"/_matrix/client/v3/sync?timeout=500{since}")
        since = f"&since={q(sync['next_batch'])}"
        timeline = sync.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        bodies.extend(e["content"].get("body") for e in timeline.get("events", []))
        return "welcome" in bodies

    await eventually(in_sync, "Veche's message in bob's /sync on Synapse", synapse.peer)
    await wait_same_state(v_alice, s_bob, room_id, synapse.peer)


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_rooms_of_other_versions_federate_both_ways(
    synapse: Synapse, veche: Veche, room_version: str
) -> None:
    s_alice, v_bob = await synapse.user(f"alice7v{room_version}"), await veche.user(
        f"bob7v{room_version}"
    )
    s_room = await create_room(s_alice, preset="public_chat", room_version=room_version)
    await v_bob.ok("POST", f"/_matrix/client/v3/join/{q(s_room)}?server_name={q(synapse.name)}", {})
    await send_text(v_bob, s_room, f"v{room_version} from Veche")
    await wait_message(s_alice, s_room, f"v{room_version} from Veche", synapse.peer)

    v_room = await create_room(v_bob, preset="public_chat", room_version=room_version)
    await s_alice.ok("POST", f"/_matrix/client/v3/join/{q(v_room)}?server_name={q(veche.name)}", {})
    await send_text(s_alice, v_room, f"v{room_version} from Synapse")
    await wait_message(v_bob, v_room, f"v{room_version} from Synapse", synapse.peer)
    await wait_same_state(v_bob, s_alice, v_room, synapse.peer)
    await wait_same_state(s_alice, v_bob, s_room, synapse.peer)
