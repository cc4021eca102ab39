"""GET /rooms/{roomId}/context/{eventId} through the real application."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import bodies, create_room, get, ids, join, messages_ok, say
from tests.http.room_helpers import Client, Reply, User, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def context(user: User, room_id: str, event_id: str, **query: object) -> Reply:
    return await get(user, f"/rooms/{q(room_id)}/context/{q(event_id)}", **query)


async def test_context_splits_the_limit_around_the_event(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    sent = [await say(alice, room_id, f"m{i}") for i in range(20)]
    reply = await context(alice, room_id, sent[10], limit=6)
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["event"]["event_id"] == sent[10]
    assert bodies(body["events_before"]) == ["m9", "m8", "m7"]
    assert bodies(body["events_after"]) == ["m11", "m12", "m13"]
    state_types = {(e["type"], e["state_key"]) for e in body["state"]}
    assert ("m.room.create", "") in state_types
    assert ("m.room.member", alice.user_id) in state_types

    # The tokens continue with /messages exactly where the context stops.
    older = await messages_ok(alice, room_id, dir="b", limit=2, **{"from": body["start"]})
    assert ids(older["chunk"]) == [sent[6], sent[5]]
    newer = await messages_ok(alice, room_id, dir="f", limit=2, **{"from": body["end"]})
    assert ids(newer["chunk"]) == [sent[14], sent[15]]


async def test_context_with_zero_limit_still_returns_the_event(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    sent = [await say(alice, room_id, f"m{i}") for i in range(3)]
    body = (await context(alice, room_id, sent[1], limit=0)).body
    assert body["event"]["event_id"] == sent[1]
    assert body["events_before"] == [] and body["events_after"] == []


async def test_context_filter_applies_to_surroundings_and_state(users: list[User]) -> None:
    alice, bob, carol = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    await join(carol, room_id)
    await say(bob, room_id, "before")
    target = await say(alice, room_id, "target")
    await say(bob, room_id, "after")
    lazy = json.dumps({"types": ["m.room.message"], "lazy_load_members": True})
    body = (await context(alice, room_id, target, limit=10, filter=lazy)).body
    assert bodies(body["events_before"]) == ["before"]
    assert bodies(body["events_after"]) == ["after"]
    assert {e["type"] for e in body["events_before"] + body["events_after"]} == {"m.room.message"}
    # The filter's types apply to the state too; lazy loading keeps the senders' members.
    assert body["state"] == []
    members = json.dumps({"lazy_load_members": True})
    state = (await context(alice, room_id, target, limit=2, filter=members)).body["state"]
    member_keys = {e["state_key"] for e in state if e["type"] == "m.room.member"}
    assert member_keys == {alice.user_id, bob.user_id}
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in state}


async def test_unknown_event_is_not_found_and_outsider_is_forbidden(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice)
    event_id = await say(alice, room_id, "private")
    unknown = await context(alice, room_id, "$doesnotexist")
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    outsider = await context(bob, room_id, event_id)
    assert (outsider.status, outsider.body["errcode"]) == (403, "M_FORBIDDEN")
    bad_limit = await context(alice, room_id, event_id, limit="x")
    assert (bad_limit.status, bad_limit.body["errcode"]) == (400, "M_INVALID_PARAM")
