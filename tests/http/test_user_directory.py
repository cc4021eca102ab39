"""POST /user_directory/search through the real application: who is searchable, matching on
user IDs and display names, limits and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import create_room, join, set_state
from tests.http.room_helpers import Client, Reply, User, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol", "dave", "bobby")


async def search(user: User, body: Any) -> Reply:
    return await user.call("POST", "/user_directory/search", body)


def found(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body
    return [result["user_id"] for result in reply.body["results"]]


async def test_finds_users_sharing_a_room_or_in_public_rooms(users: list[User]) -> None:
    alice, bob, carol, dave, _ = users
    private = await create_room(alice, preset="private_chat")
    assert (await alice.invite(private, bob.user_id)).status == 200
    await join(bob, private)
    # Dave is alone in a private room: nobody else may find him.
    await create_room(dave, preset="private_chat")
    # Carol is in a public room.
    await create_room(carol, preset="public_chat")
    assert found(await search(alice, {"search_term": "bob"})) == [bob.user_id]
    assert found(await search(alice, {"search_term": "carol"})) == [carol.user_id]
    assert found(await search(alice, {"search_term": "dave"})) == []
    assert found(await search(dave, {"search_term": "bob"})) == []
    assert found(await search(dave, {"search_term": "dave"})) == [dave.user_id]


async def test_matches_display_names_case_insensitively(users: list[User]) -> None:
    alice, bob, _, _, _ = users
    room = await create_room(alice, preset="private_chat")
    assert (await alice.invite(room, bob.user_id)).status == 200
    await join(bob, room)
    reply = await bob.call("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "Robert"})
    assert reply.status == 200, reply.body
    results = (await search(alice, {"search_term": "ROBE"})).body["results"]
    assert results == [{"user_id": bob.user_id, "display_name": "Robert"}]
    # Every word must match, in the ID or the name.
    assert found(await search(alice, {"search_term": "robert bob"})) == [bob.user_id]
    assert found(await search(alice, {"search_term": "robert carol"})) == []


async def test_exact_matches_rank_first_and_limit_sets_limited(users: list[User]) -> None:
    alice, bob, _, _, bobby = users
    room = await create_room(alice, preset="public_chat")
    await join(bobby, room)
    await join(bob, room)
    await set_state(
        bobby, room, "m.room.member", {"membership": "join", "displayname": "B"}, bobby.user_id
    )
    both = await search(alice, {"search_term": "bob"})
    assert found(both) == [bob.user_id, bobby.user_id]
    assert both.body["limited"] is False
    one = await search(alice, {"search_term": "bob", "limit": 1})
    assert found(one) == [bob.user_id]
    assert one.body["limited"] is True


async def test_like_wildcards_are_literal(users: list[User]) -> None:
    alice, bob, _, _, _ = users
    room = await create_room(alice, preset="public_chat")
    await join(bob, room)
    assert found(await search(alice, {"search_term": "%"})) == []
    assert found(await search(alice, {"search_term": "_"})) == []


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({}, 400, "M_MISSING_PARAM"),
        ({"search_term": 5}, 400, "M_BAD_JSON"),
        ({"search_term": "a", "limit": "3"}, 400, "M_BAD_JSON"),
        ({"search_term": "a", "limit": -1}, 400, "M_INVALID_PARAM"),
    ],
)
async def test_bad_requests(users: list[User], body: Any, status: int, errcode: str) -> None:
    reply = await search(users[0], body)
    assert (reply.status, reply.body["errcode"]) == (status, errcode)
