"""History visibility on every read path (C-S "Room History Visibility"): each setting, the
setting as it was when each event was sent, and users who left."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import (
    create_room,
    get,
    join,
    leave,
    messages,
    say,
    set_state,
    visible_bodies,
)
from tests.http.room_helpers import Client, User, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def can_get_event(user: User, room_id: str, event_id: str) -> bool:
    reply = await get(user, f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert reply.status in (200, 404), reply.body
    return reply.status == 200


async def test_joined_hides_events_from_before_the_join(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice, history_visibility="joined")
    early = await say(alice, room_id, "before bob")
    await join(bob, room_id)
    await say(alice, room_id, "after bob")
    assert await visible_bodies(bob, room_id) == ["after bob"]
    assert not await can_get_event(bob, room_id, early)
    context = await get(bob, f"/rooms/{q(room_id)}/context/{q(early)}")
    assert (context.status, context.body["errcode"]) == (404, "M_NOT_FOUND")
    # Bob's own join is visible to him.
    page = (await messages(bob, room_id, dir="b", limit=10)).body
    seen = {(e["type"], e.get("state_key")) for e in page["chunk"]}
    assert ("m.room.member", bob.user_id) in seen
    assert await visible_bodies(alice, room_id) == ["before bob", "after bob"]


async def test_invited_shows_events_from_the_invite_on(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice, history_visibility="invited")
    await say(alice, room_id, "before invite")
    assert (await alice.invite(room_id, bob.user_id)).status == 200
    await say(alice, room_id, "while invited")
    await join(bob, room_id)
    await say(alice, room_id, "after join")
    assert await visible_bodies(bob, room_id) == ["while invited", "after join"]


async def test_shared_shows_everything_to_members_until_they_leave(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice, history_visibility="shared")
    await say(alice, room_id, "before bob")
    await join(bob, room_id)
    await say(alice, room_id, "with bob")
    await leave(bob, room_id)
    after = await say(alice, room_id, "after bob left")
    assert await visible_bodies(bob, room_id) == ["before bob", "with bob"]
    assert not await can_get_event(bob, room_id, after)
    page = (await messages(bob, room_id, dir="b", limit=1)).body
    # Pagination for a departed user starts at their leave.
    assert page["chunk"][0]["type"] == "m.room.member"
    assert page["chunk"][0]["content"]["membership"] == "leave"
    await join(bob, room_id)
    assert await visible_bodies(bob, room_id) == ["before bob", "with bob", "after bob left"]


async def test_shared_room_is_closed_to_users_who_never_joined(users: list[User]) -> None:
    alice, _, carol = users
    room_id = await create_room(alice, history_visibility="shared")
    event_id = await say(alice, room_id, "members only")
    reply = await messages(carol, room_id, dir="b")
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")
    assert not await can_get_event(carol, room_id, event_id)


async def test_world_readable_is_open_to_anyone_until_changed(users: list[User]) -> None:
    alice, _, carol = users
    room_id = await create_room(alice, history_visibility="world_readable")
    public = await say(alice, room_id, "for everyone")
    assert await visible_bodies(carol, room_id) == ["for everyone"]
    assert await can_get_event(carol, room_id, public)
    await set_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "joined"})
    hidden = await say(alice, room_id, "members only now")
    # The room is no longer world-readable: carol may not read it at all any more.
    reply = await messages(carol, room_id, dir="b")
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")
    assert not await can_get_event(carol, room_id, hidden)
    assert await visible_bodies(alice, room_id) == ["for everyone", "members only now"]


async def test_visibility_applies_as_it_was_when_each_event_was_sent(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice, history_visibility="joined")
    await say(alice, room_id, "sent while joined-only")
    await set_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "shared"})
    await say(alice, room_id, "sent while shared")
    await join(bob, room_id)
    # Changing the setting later does not open history sent under the stricter one.
    assert await visible_bodies(bob, room_id) == ["sent while shared"]
    page = (await messages(bob, room_id, dir="b", limit=50)).body
    changes = [e for e in page["chunk"] if e["type"] == "m.room.history_visibility"]
    # The change from joined to shared is visible ("shared" after it allows bob); so is the
    # initial "joined", judged on the state before it, where no setting means "shared".
    assert [e["content"]["history_visibility"] for e in changes] == ["shared", "joined"]


async def test_relations_and_threads_hide_what_the_user_cannot_see(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice, history_visibility="joined")
    root = await say(alice, room_id, "root")
    reply = await get(bob, f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(root)}")
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")
    await join(bob, room_id)
    reply = await get(bob, f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(root)}")
    assert (reply.status, reply.body["errcode"]) == (404, "M_NOT_FOUND")
