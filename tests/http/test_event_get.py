"""GET /rooms/{roomId}/event/{eventId} through the real application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import create_room, get, join, say, set_state
from tests.http.room_helpers import Client, Reply, User, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def event(user: User, room_id: str, event_id: str) -> Reply:
    return await get(user, f"/rooms/{q(room_id)}/event/{q(event_id)}")


async def test_event_in_client_format(users: list[User]) -> None:
    alice, bob = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    event_id = await say(alice, room_id, "hello")
    reply = await event(bob, room_id, event_id)
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["event_id"] == event_id
    assert body["type"] == "m.room.message"
    assert body["content"] == {"msgtype": "m.text", "body": "hello"}
    assert body["sender"] == alice.user_id
    assert body["room_id"] == room_id
    assert isinstance(body["origin_server_ts"], int)
    assert "state_key" not in body
    # Federation-only fields never reach clients.
    assert not {"hashes", "signatures", "auth_events", "prev_events", "depth"} & set(body)
    assert body["unsigned"]["membership"] == "join"
    assert body["unsigned"]["age"] >= 0


async def test_state_event_carries_what_it_replaced(users: list[User]) -> None:
    alice, _ = users
    room_id = await create_room(alice)
    first = await set_state(alice, room_id, "m.room.name", {"name": "One"})
    second = await set_state(alice, room_id, "m.room.name", {"name": "Two"})
    body = (await event(alice, room_id, second)).body
    assert body["state_key"] == ""
    assert body["unsigned"]["replaces_state"] == first
    assert body["unsigned"]["prev_content"] == {"name": "One"}
    original = (await event(alice, room_id, first)).body
    assert "replaces_state" not in original["unsigned"]


async def test_unknown_hidden_and_misplaced_events_are_not_found(users: list[User]) -> None:
    alice, bob = users
    room_id = await create_room(alice)
    other_room = await create_room(alice)
    event_id = await say(alice, room_id, "hello")
    for user, room, target in (
        (alice, room_id, "$unknown"),
        (alice, other_room, event_id),  # exists, but in another room
        (bob, room_id, event_id),  # never joined: rooms.yaml answers 404 as well
    ):
        reply = await event(user, room, target)
        assert (reply.status, reply.body["errcode"]) == (404, "M_NOT_FOUND")
