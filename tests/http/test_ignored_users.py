"""Ignoring users (m.ignored_user_list): /sync timelines and invites, /messages and /context,
against the real app and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.http.sync_helpers import bodies, send_text, sync, timeline

IGNORED = "m.ignored_user_list"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def ignore(user: User, *ignored: str) -> None:
    content = {"ignored_users": {user_id: {} for user_id in ignored}}
    path = f"/user/{q(user.user_id)}/account_data/{IGNORED}"
    reply = await user.call("PUT", path, content)
    assert reply.status == 200, reply.body


async def shared_room(alice: User, *others: User) -> str:
    room_id = await alice.create_room(preset="public_chat")
    for other in others:
        assert (await other.join(room_id)).status == 200
    return room_id


async def test_sync_leaves_out_ignored_senders_messages_but_not_their_state(
    users: list[User],
) -> None:
    alice, bob, carol = users
    room_id = await shared_room(alice, bob, carol)
    await ignore(alice, bob.user_id)
    await send_text(bob, room_id, "from bob")
    await send_text(carol, room_id, "from carol")
    # A state event of bob's own: his membership with a new display name.
    member = {"membership": "join", "displayname": "Bobby"}
    renamed = await bob.put_state(room_id, "m.room.member", member, bob.user_id)
    assert renamed.status == 200, renamed.body
    events = timeline(await sync(alice), room_id)
    assert bodies(events) == ["from carol"]
    assert renamed.body["event_id"] in [e["event_id"] for e in events]
    # Carol ignores nobody and sees everything.
    assert bodies(timeline(await sync(carol), room_id)) == ["from bob", "from carol"]


async def test_changing_the_list_applies_to_the_next_incremental_sync(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await shared_room(alice, bob)
    since = (await sync(alice))["next_batch"]
    await ignore(alice, bob.user_id)
    after_ignore = await sync(alice, since=since, timeout=0)
    # The account data change itself reaches the client.
    changed = [e["type"] for e in after_ignore["account_data"]["events"]]
    assert IGNORED in changed
    await send_text(bob, room_id, "while ignored")
    ignored_sync = await sync(alice, since=after_ignore["next_batch"], timeout=0)
    joined = ignored_sync.get("rooms", {}).get("join", {})
    assert room_id not in joined or bodies(timeline(ignored_sync, room_id)) == []
    await ignore(alice)
    unignored = await sync(alice, since=ignored_sync["next_batch"], timeout=0)
    await send_text(bob, room_id, "after unignore")
    resumed = await sync(alice, since=unignored["next_batch"], timeout=0)
    # New events flow again; what was missed while ignored is not sent afterwards.
    assert bodies(timeline(resumed, room_id)) == ["after unignore"]


async def test_invites_from_ignored_users_are_not_shown(users: list[User]) -> None:
    alice, bob, carol = users
    await ignore(alice, bob.user_id)
    from_bob = await bob.create_room()
    assert (await bob.invite(from_bob, alice.user_id)).status == 200
    from_carol = await carol.create_room()
    assert (await carol.invite(from_carol, alice.user_id)).status == 200
    invites = (await sync(alice)).get("rooms", {}).get("invite", {})
    assert from_carol in invites
    assert from_bob not in invites


async def test_messages_and_context_leave_out_ignored_senders(users: list[User]) -> None:
    alice, bob, carol = users
    room_id = await shared_room(alice, bob, carol)
    first = await send_text(carol, room_id, "one")
    await send_text(bob, room_id, "two")
    await send_text(carol, room_id, "three")
    await ignore(alice, bob.user_id)
    page = await alice.call("GET", f"/rooms/{q(room_id)}/messages", query={"dir": "b"})
    assert page.status == 200
    assert bodies(page.body["chunk"]) == ["three", "one"]
    context = await alice.call(
        "GET", f"/rooms/{q(room_id)}/context/{q(first)}", query={"limit": "10"}
    )
    assert bodies(context.body["events_after"]) == ["three"]
    # Bob's membership (state) stays visible.
    senders = {e["sender"] for e in page.body["chunk"] if e["type"] == "m.room.member"}
    assert bob.user_id in senders
    bob_page = await carol.call("GET", f"/rooms/{q(room_id)}/messages", query={"dir": "b"})
    assert bodies(bob_page.body["chunk"]) == ["three", "two", "one"]


async def test_malformed_list_ignores_nobody(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await shared_room(alice, bob)
    path = f"/user/{q(alice.user_id)}/account_data/{IGNORED}"
    assert (await alice.call("PUT", path, {"ignored_users": ["not", "a", "map"]})).status == 200
    await send_text(bob, room_id, "still here")
    assert bodies(timeline(await sync(alice), room_id)) == ["still here"]
