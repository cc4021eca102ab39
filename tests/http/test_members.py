"""GET /rooms/{roomId}/members, /joined_members, /state and /state/{type}/{key} through the
real application: filters, `at`, and what a user who left still sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import create_room, get, join, leave, messages_ok, say, set_state
from tests.http.room_helpers import Client, Reply, User, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol", "dave", "erin")


async def members(user: User, room_id: str, **query: Any) -> Reply:
    return await get(user, f"/rooms/{q(room_id)}/members", **query)


def memberships(reply: Reply) -> dict[str, str]:
    assert reply.status == 200, reply.body
    return {e["state_key"]: e["content"]["membership"] for e in reply.body["chunk"]}


@pytest.fixture
async def room(users: list[User]) -> str:
    """alice and bob joined, carol invited, dave joined and left."""
    alice, bob, carol, dave, _ = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    assert (await alice.invite(room_id, carol.user_id)).status == 200
    await join(dave, room_id)
    await leave(dave, room_id)
    return room_id


async def test_members_lists_every_membership(users: list[User], room: str) -> None:
    alice, bob, carol, dave, _ = users
    found = await members(alice, room)
    assert memberships(found) == {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "invite",
        dave.user_id: "leave",
    }
    assert all(e["type"] == "m.room.member" and e["room_id"] == room for e in found.body["chunk"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"membership": "join"}, {"alice", "bob"}),
        ({"not_membership": "leave"}, {"alice", "bob", "carol"}),
        ({"membership": "invite"}, {"carol"}),
        # rooms.yaml: together they are an 'or': invite, or anything but join.
        ({"membership": "invite", "not_membership": "join"}, {"carol", "dave"}),
        ({"membership": "join", "not_membership": "leave"}, {"alice", "bob", "carol"}),
    ],
)
async def test_membership_filters(
    users: list[User], room: str, query: dict[str, str], expected: set[str]
) -> None:
    found = memberships(await members(users[0], room, **query))
    assert {user_id[1:].split(":")[0] for user_id in found} == expected


async def test_members_at_a_token_shows_the_members_then(users: list[User]) -> None:
    alice, bob, _, _, _ = users
    room_id = await create_room(alice)
    await say(alice, room_id, "before bob")
    token = (await messages_ok(alice, room_id, dir="b", limit=1))["start"]
    await join(bob, room_id)
    then = memberships(await members(alice, room_id, at=token))
    assert then == {alice.user_id: "join"}
    now = memberships(await members(alice, room_id))
    assert now == {alice.user_id: "join", bob.user_id: "join"}


async def test_departed_user_sees_the_room_as_it_was_when_they_left(
    users: list[User], room: str
) -> None:
    alice, _, _, dave, erin = users
    await set_state(alice, room, "m.room.name", {"name": "New name"})
    await join(erin, room)
    found = memberships(await members(dave, room))
    assert erin.user_id not in found
    assert found[dave.user_id] == "leave"
    state = await get(dave, f"/rooms/{q(room)}/state")
    assert state.status == 200
    assert ("m.room.name", "") not in {(e["type"], e["state_key"]) for e in state.body}
    name = await get(dave, f"/rooms/{q(room)}/state/m.room.name/")
    assert (name.status, name.body["errcode"]) == (404, "M_NOT_FOUND")
    joined = await get(dave, f"/rooms/{q(room)}/joined_members")
    assert (joined.status, joined.body["errcode"]) == (403, "M_FORBIDDEN")


async def test_joined_members_gives_profiles_of_joined_users(users: list[User], room: str) -> None:
    alice, bob, _, _, _ = users
    await set_state(
        bob, room, "m.room.member", {"membership": "join", "displayname": "Bobby"}, bob.user_id
    )
    reply = await get(alice, f"/rooms/{q(room)}/joined_members")
    assert reply.status == 200, reply.body
    joined = reply.body["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}
    assert joined[bob.user_id]["display_name"] == "Bobby"


async def test_room_state_and_single_state_events(users: list[User], room: str) -> None:
    alice, _, _, _, _ = users
    await set_state(alice, room, "m.room.topic", {"topic": "first"})
    topic_id = await set_state(alice, room, "m.room.topic", {"topic": "second"})
    state = await get(alice, f"/rooms/{q(room)}/state")
    assert state.status == 200
    by_key = {(e["type"], e["state_key"]): e for e in state.body}
    assert by_key[("m.room.topic", "")]["content"] == {"topic": "second"}
    assert by_key[("m.room.create", "")]["sender"] == alice.user_id
    content = await get(alice, f"/rooms/{q(room)}/state/m.room.topic")
    assert content.body == {"topic": "second"}
    with_slash = await get(alice, f"/rooms/{q(room)}/state/m.room.topic/")
    assert with_slash.body == {"topic": "second"}
    event = await get(alice, f"/rooms/{q(room)}/state/m.room.topic/", format="event")
    assert event.body["event_id"] == topic_id
    assert event.body["unsigned"]["prev_content"] == {"topic": "first"}
    member = await get(alice, f"/rooms/{q(room)}/state/m.room.member/{q(alice.user_id)}")
    assert member.body["membership"] == "join"
    missing = await get(alice, f"/rooms/{q(room)}/state/m.room.name/")
    assert (missing.status, missing.body["errcode"]) == (404, "M_NOT_FOUND")
    bad_format = await get(alice, f"/rooms/{q(room)}/state/m.room.topic", format="xml")
    assert (bad_format.status, bad_format.body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_outsiders_are_forbidden_everywhere(users: list[User], room: str) -> None:
    erin = users[4]
    for path in ("members", "joined_members", "state", "state/m.room.create/"):
        reply = await get(erin, f"/rooms/{q(room)}/{path}")
        assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN"), path


async def test_bad_member_parameters_are_rejected(users: list[User], room: str) -> None:
    alice = users[0]
    for query in ({"membership": "joined"}, {"not_membership": "x"}, {"at": "nope"}):
        reply = await members(alice, room, **query)
        assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM"), query
