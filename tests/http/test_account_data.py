"""Account data, tags and filters through the real application (C-S "Client Config",
"Room Tagging", "Filtering")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.http.sync_helpers import sync


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def test_global_account_data_round_trip_and_sync(users: list[User]) -> None:
    alice, _ = users
    path = f"/user/{q(alice.user_id)}/account_data/org.example.config"
    assert (await alice.call("GET", path)).status == 404
    token = (await sync(alice))["next_batch"]
    assert (await alice.call("PUT", path, {"theme": "dark"})).status == 200
    assert (await alice.call("GET", path)).body == {"theme": "dark"}
    body = await sync(alice, since=token, timeout=2000)
    assert body["account_data"]["events"] == [
        {"type": "org.example.config", "content": {"theme": "dark"}}
    ]
    assert (await sync(alice, since=body["next_batch"]))["account_data"]["events"] == []


async def test_room_account_data_appears_in_the_room(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    path = f"/user/{q(alice.user_id)}/rooms/{q(room_id)}/account_data/org.example.room"
    assert (await alice.call("PUT", path, {"pinned": True})).status == 200
    assert (await alice.call("GET", path)).body == {"pinned": True}
    room = (await sync(alice))["rooms"]["join"][room_id]
    assert {"type": "org.example.room", "content": {"pinned": True}} in room["account_data"][
        "events"
    ]


async def test_server_managed_types_are_refused(users: list[User]) -> None:
    alice, _ = users
    for data_type in ("m.fully_read", "m.push_rules"):
        reply = await alice.call(
            "PUT", f"/user/{q(alice.user_id)}/account_data/{data_type}", {"x": 1}
        )
        assert (reply.status, reply.body["errcode"]) == (405, "M_BAD_JSON")
    rules = await alice.call("GET", f"/user/{q(alice.user_id)}/account_data/m.push_rules")
    assert rules.status == 200 and "global" in rules.body


async def test_other_users_account_data_is_forbidden(users: list[User]) -> None:
    alice, bob = users
    path = f"/user/{q(alice.user_id)}/account_data/org.example.config"
    assert (await bob.call("PUT", path, {"a": 1})).status == 403
    assert (await bob.call("GET", path)).status == 403
    bad_room = await alice.call(
        "PUT", f"/user/{q(alice.user_id)}/rooms/not-a-room/account_data/x.y", {}
    )
    assert (bad_room.status, bad_room.body["errcode"]) == (400, "M_INVALID_PARAM")
    not_json = await alice.call("PUT", path, raw=b"[1]")
    assert not_json.status == 400


async def test_tags_round_trip_and_sync(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    base = f"/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags"
    assert (await alice.call("PUT", f"{base}/m.favourite", {"order": 0.25})).status == 200
    assert (await alice.call("PUT", f"{base}/u.work", {})).status == 200
    assert (await alice.call("GET", base)).body == {
        "tags": {"m.favourite": {"order": 0.25}, "u.work": {}}
    }
    assert (await alice.call("DELETE", f"{base}/u.work")).status == 200
    room = (await sync(alice))["rooms"]["join"][room_id]
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.25}}}} in room[
        "account_data"
    ]["events"]
    bad = await alice.call("PUT", f"{base}/x", {"order": "first"})
    assert bad.status == 400


async def test_filter_errors(users: list[User]) -> None:
    alice, bob = users
    path = f"/user/{q(alice.user_id)}/filter"
    invalid = await alice.call("POST", path, {"room": {"timeline": {"limit": 0}}})
    assert (invalid.status, invalid.body["errcode"]) == (400, "M_INVALID_PARAM")
    wrong_shape = await alice.call("POST", path, {"room": []})
    assert (wrong_shape.status, wrong_shape.body["errcode"]) == (400, "M_BAD_JSON")
    assert (await bob.call("POST", path, {})).status == 403
    created = await alice.call("POST", path, {})
    filter_id = created.body["filter_id"]
    assert (await bob.call("GET", f"/user/{q(bob.user_id)}/filter/{filter_id}")).status == 404
    assert (await alice.call("GET", f"{path}/99999")).status == 404
    unknown = await alice.call("GET", "/sync", query={"filter": "99999"})
    assert (unknown.status, unknown.body["errcode"]) == (400, "M_INVALID_PARAM")
