"""The deprecated GET /rooms/{roomId}/initialSync, GET /initialSync, GET /events (and its peeking
form) and GET /events/{eventId}, against the real app and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users

WORLD_READABLE = [
    {
        "type": "m.room.history_visibility",
        "state_key": "",
        "content": {"history_visibility": "world_readable"},
    }
]


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def new_guest(client: Client) -> User:
    reply = await client.call("POST", "/register", {}, query={"kind": "guest"})
    assert reply.status == 200, reply.body
    return User(client, reply.body["user_id"], reply.body["access_token"])


async def say(user: User, room_id: str, *bodies: str) -> list[str]:
    event_ids = []
    for body in bodies:
        reply = await user.send(room_id, {"msgtype": "m.text", "body": body}, f"t-{body}")
        assert reply.status == 200, reply.body
        event_ids.append(reply.body["event_id"])
    return event_ids


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def room_initial_sync(user: User, room_id: str, **query: str) -> Any:
    return await user.call("GET", f"/rooms/{q(room_id)}/initialSync", query=query or None)


# --- GET /rooms/{roomId}/initialSync ---------------------------------------------------------


async def test_room_initial_sync_gives_state_newest_messages_and_tokens(
    users: list[User],
) -> None:
    alice, _ = users
    room_id = await alice.create_room(name="Lounge")
    await say(alice, room_id, "one", "two", "three")
    tag = await alice.call(
        "PUT", f"/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags/u.work", {"order": 0.5}
    )
    assert tag.status == 200

    reply = await room_initial_sync(alice, room_id, limit="2")

    assert reply.status == 200, reply.body
    body = reply.body
    assert body["room_id"] == room_id and body["membership"] == "join"
    assert body["visibility"] == "private"
    assert bodies(body["messages"]["chunk"]) == ["two", "three"]  # oldest first
    state_types = {(e["type"], e["state_key"]) for e in body["state"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id)} <= (
        state_types
    )
    assert {"type": "m.tag", "content": {"tags": {"u.work": {"order": 0.5}}}} in body[
        "account_data"
    ]
    # `start` pages back to the older events through /messages.
    older = await alice.call(
        "GET",
        f"/rooms/{q(room_id)}/messages",
        query={"dir": "b", "from": body["messages"]["start"], "limit": "1"},
    )
    assert bodies(older.body["chunk"]) == ["one"]


async def test_room_initial_sync_of_a_published_room_says_public(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(visibility="public")
    reply = await room_initial_sync(alice, room_id)
    assert reply.body["visibility"] == "public"


async def test_room_initial_sync_is_forbidden_to_non_members(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room()
    reply = await room_initial_sync(bob, room_id)
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")
    unknown = await room_initial_sync(bob, "!nowhere:accounts.test")
    assert (unknown.status, unknown.body["errcode"]) == (403, "M_FORBIDDEN")


async def test_room_initial_sync_rejects_a_bad_limit(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    reply = await room_initial_sync(alice, room_id, limit="lots")
    assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_room_initial_sync_after_leaving_stops_at_the_leave(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    await say(alice, room_id, "before")
    assert (await bob.leave(room_id)).status == 200
    await say(alice, room_id, "after")
    reply = await room_initial_sync(bob, room_id)
    assert reply.status == 200, reply.body
    assert reply.body["membership"] == "leave"
    assert bodies(reply.body["messages"]["chunk"]) == ["before"]


async def test_a_guest_previews_a_world_readable_room(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(preset="public_chat", initial_state=WORLD_READABLE)
    await say(alice, room_id, "welcome")
    guest = await new_guest(client)
    reply = await room_initial_sync(guest, room_id)
    assert reply.status == 200, reply.body
    assert reply.body["membership"] == "leave"
    assert bodies(reply.body["messages"]["chunk"]) == ["welcome"]


# --- GET /initialSync ------------------------------------------------------------------------


async def test_initial_sync_lists_joined_and_invited_rooms(users: list[User]) -> None:
    alice, bob = users
    joined = await bob.create_room(name="Mine")
    await say(bob, joined, "hello")
    invited = await alice.create_room()
    assert (await alice.invite(invited, bob.user_id)).status == 200
    left = await alice.create_room(preset="public_chat")
    assert (await bob.join(left)).status == 200
    assert (await bob.leave(left)).status == 200
    data = await bob.call(
        "PUT", f"/user/{q(bob.user_id)}/account_data/org.example.settings", {"dark": True}
    )
    assert data.status == 200

    reply = await bob.call("GET", "/initialSync", query={"limit": "5"})

    assert reply.status == 200, reply.body
    body = reply.body
    rooms = {room["room_id"]: room for room in body["rooms"]}
    assert set(rooms) == {joined, invited}
    assert rooms[joined]["membership"] == "join"
    assert bodies(rooms[joined]["messages"]["chunk"]) == ["hello"]
    assert rooms[invited]["membership"] == "invite"
    assert rooms[invited]["invite"]["content"]["membership"] == "invite"
    assert rooms[invited]["invite"]["state_key"] == bob.user_id
    assert body["presence"] == []
    assert {"type": "org.example.settings", "content": {"dark": True}} in body["account_data"]
    assert body["end"].startswith("s")

    archived = await bob.call("GET", "/initialSync", query={"archived": "true"})
    rooms = {room["room_id"]: room for room in archived.body["rooms"]}
    assert rooms[left]["membership"] == "leave"


async def test_initial_sync_rejects_bad_parameters_and_guests(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    reply = await alice.call("GET", "/initialSync", query={"archived": "maybe"})
    assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM")
    guest = await new_guest(client)
    denied = await guest.call("GET", "/initialSync")
    assert (denied.status, denied.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


# --- GET /events -----------------------------------------------------------------------------


async def events(user: User, **query: str) -> Any:
    return await user.call("GET", "/events", query=query)


async def test_events_after_initial_sync_returns_what_happened_since(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    end = (await alice.call("GET", "/initialSync")).body["end"]
    await say(bob, room_id, "new")

    first = await events(alice, **{"from": end, "timeout": "0"})

    assert first.status == 200, first.body
    assert first.body["start"] == end
    assert bodies(first.body["chunk"]) == ["new"]
    assert first.body["chunk"][0]["room_id"] == room_id
    again = await events(alice, **{"from": first.body["end"], "timeout": "0"})
    assert again.body["chunk"] == [] and again.body["end"] == first.body["end"]


async def test_events_waits_for_the_next_event(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    end = (await alice.call("GET", "/initialSync")).body["end"]
    waiting = asyncio.create_task(events(alice, **{"from": end, "timeout": "10000"}))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await say(bob, room_id, "wake up")
    reply = await asyncio.wait_for(waiting, 5)
    assert bodies(reply.body["chunk"]) == ["wake up"]


async def test_events_brings_invites_from_rooms_not_joined(users: list[User]) -> None:
    alice, bob = users
    end = (await bob.call("GET", "/initialSync")).body["end"]
    room_id = await alice.create_room()
    await say(alice, room_id, "secret")
    assert (await alice.invite(room_id, bob.user_id)).status == 200
    reply = await events(bob, **{"from": end, "timeout": "0"})
    assert [(e["type"], e["content"].get("membership")) for e in reply.body["chunk"]] == [
        ("m.room.member", "invite")
    ]


async def test_events_rejects_a_bad_from_token(users: list[User]) -> None:
    alice, _ = users
    for token in ("garbage", "t3-4"):
        reply = await events(alice, **{"from": token, "timeout": "0"})
        assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM"), token


async def test_peeking_events_of_a_world_readable_room(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(preset="public_chat", initial_state=WORLD_READABLE)
    private = await alice.create_room()
    guest = await new_guest(client)
    end = (await room_initial_sync(guest, room_id)).body["messages"]["end"]
    await say(alice, room_id, "seen by lurkers")
    await say(alice, private, "not for them")

    reply = await events(guest, **{"from": end, "timeout": "0", "room_id": room_id})

    assert reply.status == 200, reply.body
    assert bodies(reply.body["chunk"]) == ["seen by lurkers"]
    denied = await events(guest, **{"from": end, "timeout": "0", "room_id": private})
    assert (denied.status, denied.body["errcode"]) == (403, "M_FORBIDDEN")
    bad = await events(guest, **{"timeout": "0", "room_id": "not a room"})
    assert (bad.status, bad.body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_events_hides_events_of_rooms_the_user_is_not_in(users: list[User]) -> None:
    alice, bob = users
    end = (await bob.call("GET", "/initialSync")).body["end"]
    room_id = await alice.create_room(preset="public_chat")
    await say(alice, room_id, "elsewhere")
    reply = await events(bob, **{"from": end, "timeout": "0"})
    assert reply.body["chunk"] == []


# --- GET /events/{eventId} -------------------------------------------------------------------


async def test_event_by_id_for_members_only(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room()
    (event_id,) = await say(alice, room_id, "hi")
    reply = await alice.call("GET", f"/events/{q(event_id)}")
    assert reply.status == 200, reply.body
    assert reply.body["event_id"] == event_id and reply.body["room_id"] == room_id
    hidden = await bob.call("GET", f"/events/{q(event_id)}")
    assert (hidden.status, hidden.body["errcode"]) == (404, "M_NOT_FOUND")
    unknown = await alice.call("GET", f"/events/{q('$nothing')}")
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
