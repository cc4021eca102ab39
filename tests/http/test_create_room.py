"""POST /createRoom through the real application on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, current_state, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def alice(client: Client) -> User:
    (alice,) = await register_users(client, "alice")
    return alice


async def event_order(pool: asyncpg.Pool, room_id: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT type, state_key FROM events WHERE room_id = $1 ORDER BY stream_ordering", room_id
    )
    return [(row["type"], row["state_key"]) for row in rows]


async def test_private_chat_preset_sets_invite_only_shared_can_join(
    client: Client, alice: User
) -> None:
    room_id = await alice.create_room(preset="private_chat")
    state = await current_state(client.deps, room_id)
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "shared"}
    assert state[("m.room.guest_access", "")] == {"guest_access": "can_join"}
    assert state[("m.room.member", alice.user_id)] == {"membership": "join", "displayname": "alice"}
    assert state[("m.room.power_levels", "")]["users"] == {alice.user_id: 100}
    assert state[("m.room.power_levels", "")]["invite"] == 0
    assert state[("m.room.create", "")]["room_version"] == "11"
    assert "creator" not in state[("m.room.create", "")]


async def test_public_chat_preset_is_public_and_forbids_guests(client: Client, alice: User) -> None:
    room_id = await alice.create_room(preset="public_chat")
    state = await current_state(client.deps, room_id)
    assert state[("m.room.join_rules", "")] == {"join_rule": "public"}
    assert state[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    assert state[("m.room.power_levels", "")]["invite"] == 50
    # The preset says nothing about the directory: still private there.
    listed = await client.call("GET", f"/directory/list/room/{q(room_id)}")
    assert listed.body == {"visibility": "private"}


async def test_public_visibility_implies_public_chat_and_publishes(
    client: Client, alice: User
) -> None:
    room_id = await alice.create_room(visibility="public")
    state = await current_state(client.deps, room_id)
    assert state[("m.room.join_rules", "")] == {"join_rule": "public"}
    listed = await client.call("GET", f"/directory/list/room/{q(room_id)}")
    assert listed.body == {"visibility": "public"}


async def test_trusted_private_chat_gives_invitees_creator_power_and_is_direct(
    client: Client, alice: User
) -> None:
    (bob,) = await register_users(client, "bob")
    room_id = await alice.create_room(
        preset="trusted_private_chat", invite=[bob.user_id], is_direct=True
    )
    state = await current_state(client.deps, room_id)
    assert state[("m.room.power_levels", "")]["users"] == {alice.user_id: 100, bob.user_id: 100}
    assert state[("m.room.member", bob.user_id)] == {
        "membership": "invite",
        "displayname": "bob",
        "is_direct": True,
    }
    joined = await bob.join(room_id)
    assert joined.status == 200, joined.body


async def test_events_follow_the_spec_order_and_overrides(
    client: Client, alice: User, pool: asyncpg.Pool
) -> None:
    (bob,) = await register_users(client, "bob")
    room_id = await alice.create_room(
        preset="private_chat",
        room_alias_name="ordered",
        name="The name",
        topic="The topic",
        invite=[bob.user_id],
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            {"type": "m.room.name", "state_key": "", "content": {"name": "overridden"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ],
    )
    assert await event_order(pool, room_id) == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("org.example.custom", "k"),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
    ]
    state = await current_state(client.deps, room_id)
    # initial_state beats the preset; `name` beats initial_state.
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "joined"}
    assert state[("m.room.name", "")] == {"name": "The name"}
    assert state[("m.room.topic", "")]["topic"] == "The topic"
    assert state[("m.room.topic", "")]["m.topic"]["m.text"][0]["mimetype"] == "text/plain"
    assert state[("m.room.canonical_alias", "")] == {"alias": "#ordered:accounts.test"}
    resolved = await client.call("GET", f"/directory/room/{q('#ordered:accounts.test')}")
    assert resolved.body["room_id"] == room_id


async def test_taken_alias_is_room_in_use_and_creates_nothing(
    client: Client, alice: User, pool: asyncpg.Pool
) -> None:
    await alice.create_room(room_alias_name="taken")
    rooms_before = await pool.fetchval("SELECT count(*) FROM rooms")
    reply = await alice.call("POST", "/createRoom", {"room_alias_name": "taken"})
    assert reply.status == 400
    assert reply.body["errcode"] == "M_ROOM_IN_USE"
    assert await pool.fetchval("SELECT count(*) FROM rooms") == rooms_before


async def test_power_level_content_override_is_applied(client: Client, alice: User) -> None:
    (bob,) = await register_users(client, "bob")
    room_id = await alice.create_room(
        power_level_content_override={
            "events_default": 10,
            "users": {alice.user_id: 100, bob.user_id: 42},
        }
    )
    levels = (await current_state(client.deps, room_id))[("m.room.power_levels", "")]
    assert levels["events_default"] == 10
    assert levels["users"] == {alice.user_id: 100, bob.user_id: 42}
    assert levels["state_default"] == 50


async def test_override_that_locks_out_the_creator_is_invalid_room_state(
    client: Client, alice: User, pool: asyncpg.Pool
) -> None:
    reply = await alice.call(
        "POST",
        "/createRoom",
        {"name": "cannot set", "power_level_content_override": {"users": {alice.user_id: 0}}},
    )
    assert reply.status == 400
    assert reply.body["errcode"] == "M_INVALID_ROOM_STATE"
    assert await pool.fetchval("SELECT count(*) FROM rooms") == 0


async def test_room_version_12_derives_the_id_and_keeps_creators_out_of_users(
    client: Client, alice: User
) -> None:
    (bob,) = await register_users(client, "bob")
    room_id = await alice.create_room(
        room_version="12", preset="trusted_private_chat", invite=[bob.user_id]
    )
    assert room_id.startswith("!") and ":" not in room_id
    state = await current_state(client.deps, room_id)
    create = state[("m.room.create", "")]
    assert create["room_version"] == "12"
    assert create["additional_creators"] == [bob.user_id]
    levels = state[("m.room.power_levels", "")]
    assert alice.user_id not in levels["users"] and bob.user_id not in levels["users"]
    assert levels["events"]["m.room.tombstone"] > levels["state_default"]
    # The infinitely powerful creator can still change state.
    reply = await alice.put_state(room_id, "m.room.name", {"name": "v12"})
    assert reply.status == 200, reply.body


async def test_room_version_1_has_creator_and_server_chosen_event_ids(
    client: Client, alice: User
) -> None:
    room_id = await alice.create_room(room_version="1", name="old")
    state = await current_state(client.deps, room_id)
    assert state[("m.room.create", "")]["creator"] == alice.user_id
    assert state[("m.room.create", "")]["room_version"] == "1"
    reply = await alice.send(room_id, {"msgtype": "m.text", "body": "hi"}, "t1")
    assert reply.status == 200
    assert reply.body["event_id"].endswith(":accounts.test")


async def test_creation_content_is_kept_and_server_keys_overwritten(
    client: Client, alice: User
) -> None:
    room_id = await alice.create_room(
        creation_content={
            "m.federate": False,
            "type": "m.space",
            "creator": "@mallory:accounts.test",
            "room_version": "1",
        }
    )
    create = (await current_state(client.deps, room_id))[("m.room.create", "")]
    assert create == {"m.federate": False, "type": "m.space", "room_version": "11"}


async def test_default_room_version_comes_from_the_config(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool, default_room_version="10") as client:
        (alice,) = await register_users(client, "alice")
        room_id = await alice.create_room()
        state = await current_state(client.deps, room_id)
        assert state[("m.room.create", "")]["room_version"] == "10"


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"room_version": "99"}, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"room_version": 11}, "M_BAD_JSON"),
        ({"preset": "party"}, "M_INVALID_PARAM"),
        ({"visibility": "secret"}, "M_INVALID_PARAM"),
        ({"invite": "@bob:accounts.test"}, "M_BAD_JSON"),
        ({"invite": ["not a user"]}, "M_INVALID_PARAM"),
        ({"initial_state": [{"type": "m.room.topic"}]}, "M_BAD_JSON"),
        ({"initial_state": [{"type": "m.room.member", "content": {}}]}, "M_INVALID_PARAM"),
        ({"creation_content": {"m.federate": "no"}}, "M_BAD_JSON"),
        ({"room_alias_name": "has:colon"}, "M_INVALID_PARAM"),
        ({"name": "x" * 256}, "M_INVALID_PARAM"),
        ({"power_level_content_override": []}, "M_BAD_JSON"),
    ],
)
async def test_bad_request_bodies_are_rejected(
    client: Client, alice: User, body: dict[str, object], errcode: str
) -> None:
    reply = await alice.call("POST", "/createRoom", body)
    assert reply.status == 400, reply.body
    assert reply.body["errcode"] == errcode


async def test_body_that_is_not_json_is_not_json(client: Client, alice: User) -> None:
    reply = await alice.call("POST", "/createRoom", raw=b"{not json")
    assert reply.status == 400
    assert reply.body["errcode"] == "M_NOT_JSON"


async def test_create_room_needs_an_access_token(client: Client) -> None:
    reply = await client.call("POST", "/createRoom", {})
    assert reply.status == 401
    assert reply.body["errcode"] == "M_MISSING_TOKEN"


async def test_inviting_an_unknown_local_user_fails_before_creating(
    client: Client, alice: User, pool: asyncpg.Pool
) -> None:
    reply = await alice.call("POST", "/createRoom", {"invite": ["@nobody:accounts.test"]})
    assert reply.status == 404
    assert reply.body["errcode"] == "M_NOT_FOUND"
    assert await pool.fetchval("SELECT count(*) FROM rooms") == 0
