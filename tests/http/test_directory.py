"""Room aliases and the published room directory through the real application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users, state_event

ALIAS = "#coffee:accounts.test"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


def alias_path(alias: str) -> str:
    return f"/directory/room/{q(alias)}"


async def test_alias_create_resolve_list_delete(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    created = await alice.call("PUT", alias_path(ALIAS), {"room_id": room_id})
    assert created.status == 200 and created.body == {}
    resolved = await client.call("GET", alias_path(ALIAS))
    assert resolved.status == 200
    assert resolved.body == {"room_id": room_id, "servers": ["accounts.test"]}
    listed = await alice.call("GET", f"/rooms/{q(room_id)}/aliases")
    assert listed.body == {"aliases": [ALIAS]}
    taken = await alice.call("PUT", alias_path(ALIAS), {"room_id": room_id})
    assert taken.status == 409 and taken.body["errcode"] == "M_UNKNOWN"
    deleted = await alice.call("DELETE", alias_path(ALIAS))
    assert deleted.status == 200
    gone = await client.call("GET", alias_path(ALIAS))
    assert gone.status == 404 and gone.body["errcode"] == "M_NOT_FOUND"
    again = await alice.call("DELETE", alias_path(ALIAS))
    assert again.status == 404


async def test_alias_creation_errors(client: Client, users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room()
    not_member = await bob.call("PUT", alias_path(ALIAS), {"room_id": room_id})
    assert not_member.status == 403 and not_member.body["errcode"] == "M_FORBIDDEN"
    unknown = await alice.call("PUT", alias_path(ALIAS), {"room_id": "!nope:accounts.test"})
    assert unknown.status == 404
    remote = await alice.call("PUT", alias_path("#x:remote.test"), {"room_id": room_id})
    assert remote.status == 400 and remote.body["errcode"] == "M_INVALID_PARAM"
    invalid = await alice.call("PUT", alias_path("coffee"), {"room_id": room_id})
    assert invalid.status == 400 and invalid.body["errcode"] == "M_INVALID_PARAM"
    missing = await alice.call("PUT", alias_path(ALIAS), {})
    assert missing.status == 400 and missing.body["errcode"] == "M_MISSING_PARAM"
    bad_get = await client.call("GET", alias_path("#"))
    assert bad_get.status == 400 and bad_get.body["errcode"] == "M_INVALID_PARAM"
    remote_get = await client.call("GET", alias_path("#x:remote.test"))
    assert remote_get.status == 404


async def test_alias_deletion_by_creator_or_room_admin_only(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat", room_alias_name="main")
    await bob.join(room_id)
    assert (await bob.call("PUT", alias_path(ALIAS), {"room_id": room_id})).status == 200
    denied = await bob.call("DELETE", alias_path("#main:accounts.test"))
    assert denied.status == 403 and denied.body["errcode"] == "M_FORBIDDEN"
    # The room's admin may remove any alias of the room; the canonical alias follows.
    assert (await alice.call("DELETE", alias_path(ALIAS))).status == 200
    assert (await alice.call("DELETE", alias_path("#main:accounts.test"))).status == 200
    canonical = await state_event(client.deps, room_id, "m.room.canonical_alias")
    assert "alias" not in canonical.content


async def test_local_aliases_need_membership_unless_world_readable(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    private = await alice.create_room(room_alias_name="private")
    denied = await bob.call("GET", f"/rooms/{q(private)}/aliases")
    assert denied.status == 403 and denied.body["errcode"] == "M_FORBIDDEN"
    readable = await alice.create_room(
        room_alias_name="readable",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    allowed = await bob.call("GET", f"/rooms/{q(readable)}/aliases")
    assert allowed.body == {"aliases": ["#readable:accounts.test"]}


async def test_directory_visibility(client: Client, users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    path = f"/directory/list/room/{q(room_id)}"
    assert (await client.call("GET", path)).body == {"visibility": "private"}
    await bob.join(room_id)
    denied = await bob.call("PUT", path, {"visibility": "public"})
    assert denied.status == 403
    assert (await alice.call("PUT", path, {"visibility": "public"})).status == 200
    assert (await client.call("GET", path)).body == {"visibility": "public"}
    assert (await alice.call("PUT", path, {"visibility": "hidden"})).status == 400
    unknown = await client.call("GET", f"/directory/list/room/{q('!no:accounts.test')}")
    assert unknown.status == 404 and unknown.body["errcode"] == "M_NOT_FOUND"
    unknown_put = await alice.call(
        "PUT", f"/directory/list/room/{q('!no:accounts.test')}", {"visibility": "public"}
    )
    assert unknown_put.status == 404


async def test_public_rooms_lists_published_rooms_with_their_details(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    room_id = await alice.create_room(
        visibility="public", name="Coffee", topic="Beans", room_alias_name="coffee"
    )
    await alice.create_room(name="Hidden")
    await bob.join(room_id)
    reply = await client.call("GET", "/publicRooms")
    assert reply.status == 200
    assert reply.body["chunk"] == [
        {
            "room_id": room_id,
            "num_joined_members": 2,
            "world_readable": False,
            "guest_can_join": False,
            "join_rule": "public",
            "name": "Coffee",
            "topic": "Beans",
            "canonical_alias": ALIAS,
        }
    ]
    assert reply.body["total_room_count_estimate"] == 1
    assert "next_batch" not in reply.body and "prev_batch" not in reply.body


async def test_public_rooms_pages_largest_first(client: Client, users: list[User]) -> None:
    alice, bob = users
    rooms = [await alice.create_room(visibility="public", name=f"room {i}") for i in range(3)]
    await bob.join(rooms[2])
    first = await client.call("GET", "/publicRooms", query={"limit": "2"})
    assert first.body["chunk"][0]["room_id"] == rooms[2]
    assert len(first.body["chunk"]) == 2 and first.body["total_room_count_estimate"] == 3
    second = await client.call(
        "GET", "/publicRooms", query={"limit": "2", "since": first.body["next_batch"]}
    )
    assert len(second.body["chunk"]) == 1 and "next_batch" not in second.body
    seen = {c["room_id"] for c in first.body["chunk"] + second.body["chunk"]}
    assert seen == set(rooms)
    back = await client.call(
        "GET", "/publicRooms", query={"limit": "2", "since": second.body["prev_batch"]}
    )
    assert back.body["chunk"] == first.body["chunk"]


async def test_public_rooms_filter(client: Client, users: list[User]) -> None:
    alice, _ = users
    tea = await alice.create_room(visibility="public", name="Tea Party")
    space = await alice.create_room(
        visibility="public", topic="all about TEA", creation_content={"type": "m.space"}
    )
    await alice.create_room(visibility="public", name="Coffee")
    found = await alice.call("POST", "/publicRooms", {"filter": {"generic_search_term": "tea"}})
    assert {c["room_id"] for c in found.body["chunk"]} == {tea, space}
    spaces = await alice.call("POST", "/publicRooms", {"filter": {"room_types": ["m.space"]}})
    assert [c["room_id"] for c in spaces.body["chunk"]] == [space]
    assert spaces.body["chunk"][0]["room_type"] == "m.space"
    untyped = await alice.call(
        "POST", "/publicRooms", {"limit": 1, "filter": {"room_types": [None]}}
    )
    assert len(untyped.body["chunk"]) == 1 and "next_batch" in untyped.body


async def test_public_rooms_bad_requests(client: Client, users: list[User]) -> None:
    alice, _ = users
    bad_limit = await client.call("GET", "/publicRooms", query={"limit": "many"})
    assert bad_limit.status == 400 and bad_limit.body["errcode"] == "M_INVALID_PARAM"
    bad_since = await client.call("GET", "/publicRooms", query={"since": "garbage"})
    assert bad_since.status == 400 and bad_since.body["errcode"] == "M_INVALID_PARAM"
    bad_filter = await alice.call("POST", "/publicRooms", {"filter": "tea"})
    assert bad_filter.status == 400 and bad_filter.body["errcode"] == "M_BAD_JSON"
    bad_types = await alice.call("POST", "/publicRooms", {"filter": {"room_types": "m.space"}})
    assert bad_types.status == 400 and bad_types.body["errcode"] == "M_BAD_JSON"
    remote = await client.call("GET", "/publicRooms", query={"server": "remote.test"})
    assert remote.status == 404
    no_token = await client.call("POST", "/publicRooms", {})
    assert no_token.status == 401
