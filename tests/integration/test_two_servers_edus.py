"""Two Veche servers exchanging ephemeral data and answering lookups for each other's clients
(issue 5): typing and read receipts as EDUs both ways, remote profiles, remote aliases (and
joining by one), and another server's public room directory.
"""

from __future__ import annotations

from typing import Any

from tests.integration.test_two_servers import Servers, User, eventually, q, send_text


async def shared_room(servers: Servers, alias_localpart: str = "lobby") -> tuple[User, User, str]:
    """alice@A creates a public room with an alias; bob@B joins it by room ID."""
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    status, created = await alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "room_alias_name": alias_localpart, "name": "Lobby"},
    )
    assert status == 200, created
    room_id = created["room_id"]
    status, joined = await bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(servers.a.name)}", {}
    )
    assert status == 200, joined
    return alice, bob, room_id


async def ephemeral_events(user: User, room_id: str, event_type: str) -> list[dict[str, Any]]:
    status, sync = await user.call("GET", "/_matrix/client/v3/sync?timeout=0")
    assert status == 200, sync
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


async def typing_users(user: User, room_id: str) -> list[str]:
    events = await ephemeral_events(user, room_id, "m.typing")
    return [u for e in events for u in e["content"]["user_ids"]]


async def set_typing(user: User, room_id: str, typing: bool) -> None:
    status, reply = await user.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(user.user_id)}",
        {"typing": typing, "timeout": 30000} if typing else {"typing": False},
    )
    assert status == 200, reply


async def test_typing_reaches_the_other_server_both_ways_and_stops(servers: Servers) -> None:
    alice, bob, room_id = await shared_room(servers)

    await set_typing(alice, room_id, True)

    async def bob_sees_alice_typing() -> bool:
        return alice.user_id in await typing_users(bob, room_id)

    await eventually(bob_sees_alice_typing)

    await set_typing(bob, room_id, True)

    async def alice_sees_bob_typing() -> bool:
        return bob.user_id in await typing_users(alice, room_id)

    await eventually(alice_sees_bob_typing)

    await set_typing(alice, room_id, False)

    async def bob_sees_alice_stop() -> bool:
        return alice.user_id not in await typing_users(bob, room_id)

    await eventually(bob_sees_alice_stop)


async def test_a_read_receipt_of_a_remote_user_shows_up_locally(servers: Servers) -> None:
    alice, bob, room_id = await shared_room(servers)
    status, sent = await alice.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "read me"},
    )
    assert status == 200, sent
    event_id = sent["event_id"]

    async def bob_has_the_event() -> bool:
        status, _ = await bob.call(
            "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}"
        )
        return status == 200

    await eventually(bob_has_the_event)
    status, reply = await bob.call(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}
    )
    assert status == 200, reply

    async def alice_sees_bobs_receipt() -> bool:
        events = await ephemeral_events(alice, room_id, "m.receipt")
        readers = [
            user_id for e in events for user_id in e["content"].get(event_id, {}).get("m.read", {})
        ]
        return bob.user_id in readers

    await eventually(alice_sees_bobs_receipt)


async def test_a_private_receipt_stays_on_its_server(servers: Servers) -> None:
    alice, bob, room_id = await shared_room(servers)
    status, sent = await bob.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "mine"},
    )
    assert status == 200, sent
    event_id = sent["event_id"]
    status, reply = await bob.call(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read.private/{q(event_id)}", {}
    )
    assert status == 200, reply
    # A public receipt sent afterwards arrives; the private one must not have come with it.
    await send_text(alice, room_id, "t2", "after")
    status, reply = await bob.call(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}
    )
    assert status == 200, reply

    async def alice_sees_the_public_receipt() -> bool:
        events = await ephemeral_events(alice, room_id, "m.receipt")
        return any(event_id in e["content"] for e in events)

    await eventually(alice_sees_the_public_receipt)
    events = await ephemeral_events(alice, room_id, "m.receipt")
    assert all("m.read.private" not in e["content"][event_id] for e in events)


async def test_a_remote_users_profile_is_looked_up_on_their_server(servers: Servers) -> None:
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    status, reply = await bob.call(
        "PUT",
        f"/_matrix/client/v3/profile/{q(bob.user_id)}/displayname",
        {"displayname": "Bob of B"},
    )
    assert status == 200, reply

    status, profile = await alice.call("GET", f"/_matrix/client/v3/profile/{q(bob.user_id)}")
    assert status == 200, profile
    assert profile["displayname"] == "Bob of B"
    status, field = await alice.call(
        "GET", f"/_matrix/client/v3/profile/{q(bob.user_id)}/displayname"
    )
    assert (status, field) == (200, {"displayname": "Bob of B"})

    nobody = f"@nobody:{servers.b.name}"
    status, missing = await alice.call("GET", f"/_matrix/client/v3/profile/{q(nobody)}")
    assert status == 404, missing
    assert missing["errcode"] == "M_NOT_FOUND"


async def test_a_remote_alias_resolves_and_joins_the_room(servers: Servers) -> None:
    alice = await servers.a.register("alice")
    bob = await servers.b.register("bob")
    status, created = await alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "room_alias_name": "hall"},
    )
    assert status == 200, created
    room_id, alias = created["room_id"], f"#hall:{servers.a.name}"

    status, resolved = await bob.call("GET", f"/_matrix/client/v3/directory/room/{q(alias)}")
    assert status == 200, resolved
    assert resolved["room_id"] == room_id
    assert servers.a.name in resolved["servers"]

    status, joined = await bob.call("POST", f"/_matrix/client/v3/join/{q(alias)}", {})
    assert status == 200, joined
    assert joined["room_id"] == room_id
    status, members = await alice.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members"
    )
    assert status == 200, members
    assert bob.user_id in members["joined"]

    missing = f"#nowhere:{servers.a.name}"
    status, reply = await bob.call("GET", f"/_matrix/client/v3/directory/room/{q(missing)}")
    assert (status, reply["errcode"]) == (404, "M_NOT_FOUND")


async def test_another_servers_public_rooms_are_listed(servers: Servers) -> None:
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    status, created = await alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "visibility": "public", "name": "Town square"},
    )
    assert status == 200, created
    room_id = created["room_id"]
    status, hidden = await alice.call(
        "POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat", "name": "Back room"}
    )
    assert status == 200, hidden

    server = q(servers.a.name)
    status, listed = await bob.call("GET", f"/_matrix/client/v3/publicRooms?server={server}")
    assert status == 200, listed
    assert [room["room_id"] for room in listed["chunk"]] == [room_id]
    assert listed["chunk"][0]["name"] == "Town square"

    status, found = await bob.call(
        "POST",
        f"/_matrix/client/v3/publicRooms?server={server}",
        {"filter": {"generic_search_term": "town"}},
    )
    assert status == 200, found
    assert [room["room_id"] for room in found["chunk"]] == [room_id]
    status, none = await bob.call(
        "POST",
        f"/_matrix/client/v3/publicRooms?server={server}",
        {"filter": {"generic_search_term": "nothing like it"}},
    )
    assert status == 200, none
    assert none["chunk"] == []

    # B's own directory is not A's.
    status, own = await bob.call("GET", "/_matrix/client/v3/publicRooms")
    assert status == 200, own
    assert own["chunk"] == []
