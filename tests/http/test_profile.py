"""Profiles through the real application: reading, changing, limits, and the new member events
a display name or avatar change sends into every joined room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users, state_event

AVATAR = "mxc://accounts.test/abcdef"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


def field_path(user: User, key: str) -> str:
    return f"/profile/{q(user.user_id)}/{q(key)}"


async def test_default_profile_is_the_localpart_and_needs_no_token(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    reply = await client.call("GET", f"/profile/{q(alice.user_id)}")
    assert reply.status == 200 and reply.body == {"displayname": "alice"}
    field = await client.call("GET", field_path(alice, "displayname"))
    assert field.body == {"displayname": "alice"}
    unset = await client.call("GET", field_path(alice, "avatar_url"))
    assert unset.status == 404 and unset.body["errcode"] == "M_NOT_FOUND"


async def test_display_name_and_avatar_changes_reach_joined_rooms_only(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    joined = [await alice.create_room(), await alice.create_room(room_version="1")]
    invited_to = await bob.create_room()
    await bob.invite(invited_to, alice.user_id)
    left = await alice.create_room()
    await alice.leave(left)
    put_name = await alice.call("PUT", field_path(alice, "displayname"), {"displayname": "Alice"})
    assert put_name.status == 200 and put_name.body == {}
    put_avatar = await alice.call("PUT", field_path(alice, "avatar_url"), {"avatar_url": AVATAR})
    assert put_avatar.status == 200
    profile = await client.call("GET", f"/profile/{q(alice.user_id)}")
    assert profile.body == {"displayname": "Alice", "avatar_url": AVATAR}
    for room_id in joined:
        member = await state_event(client.deps, room_id, "m.room.member", alice.user_id)
        assert dict(member.content) == {
            "membership": "join",
            "displayname": "Alice",
            "avatar_url": AVATAR,
        }
    invite = await state_event(client.deps, invited_to, "m.room.member", alice.user_id)
    assert invite.content["membership"] == "invite" and invite.content["displayname"] == "alice"
    leave = await state_event(client.deps, left, "m.room.member", alice.user_id)
    assert dict(leave.content) == {"membership": "leave"}
    # Joining later copies the current profile into the join event.
    await alice.join(invited_to)
    member = await state_event(client.deps, invited_to, "m.room.member", alice.user_id)
    assert member.content["displayname"] == "Alice" and member.content["avatar_url"] == AVATAR


async def test_clearing_the_display_name(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    assert (
        await alice.call("PUT", field_path(alice, "displayname"), {"displayname": ""})
    ).status == 200
    assert (await client.call("GET", f"/profile/{q(alice.user_id)}")).body == {}
    member = await state_event(client.deps, room_id, "m.room.member", alice.user_id)
    assert dict(member.content) == {"membership": "join"}


async def test_setting_the_same_name_sends_no_member_event(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    before = await pool.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id)
    await alice.call("PUT", field_path(alice, "displayname"), {"displayname": "alice"})
    assert await pool.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id) == before


async def test_custom_fields_can_be_set_and_deleted(client: Client, users: list[User]) -> None:
    alice, _ = users
    assert (
        await alice.call("PUT", field_path(alice, "m.tz"), {"m.tz": "Europe/Riga"})
    ).status == 200
    custom = await alice.call(
        "PUT", field_path(alice, "org.example.pronouns"), {"org.example.pronouns": ["she", "her"]}
    )
    assert custom.status == 200
    profile = (await client.call("GET", f"/profile/{q(alice.user_id)}")).body
    assert profile == {
        "displayname": "alice",
        "m.tz": "Europe/Riga",
        "org.example.pronouns": ["she", "her"],
    }
    assert (await alice.call("DELETE", field_path(alice, "org.example.pronouns"))).status == 200
    assert (await alice.call("DELETE", field_path(alice, "org.example.pronouns"))).status == 200
    gone = await client.call("GET", field_path(alice, "org.example.pronouns"))
    assert gone.status == 404


async def test_only_the_owner_may_change_a_profile(client: Client, users: list[User]) -> None:
    alice, bob = users
    reply = await bob.call("PUT", field_path(alice, "displayname"), {"displayname": "pwned"})
    assert reply.status == 403 and reply.body["errcode"] == "M_FORBIDDEN"
    delete = await bob.call("DELETE", field_path(alice, "displayname"))
    assert delete.status == 403
    no_token = await client.call("PUT", field_path(alice, "displayname"), {"displayname": "x"})
    assert no_token.status == 401


@pytest.mark.parametrize(
    ("key", "body", "errcode"),
    [
        ("displayname", {"displayname": 5}, "M_BAD_JSON"),
        ("displayname", {"avatar_url": AVATAR}, "M_MISSING_PARAM"),
        ("avatar_url", {"avatar_url": "https://example.org/a.png"}, "M_INVALID_PARAM"),
        ("Not-A-Key", {"Not-A-Key": 1}, "M_INVALID_PARAM"),
        ("org." + "a" * 260, {"org." + "a" * 260: 1}, "M_KEY_TOO_LARGE"),
        ("org.example.big", {"org.example.big": "x" * 70_000}, "M_PROFILE_TOO_LARGE"),
    ],
)
async def test_bad_profile_updates(
    client: Client, users: list[User], key: str, body: dict[str, object], errcode: str
) -> None:
    alice, _ = users
    reply = await alice.call("PUT", field_path(alice, key), body)
    assert reply.status == 400, reply.body
    assert reply.body["errcode"] == errcode


async def test_unknown_and_remote_users_have_no_profile(client: Client, users: list[User]) -> None:
    for user_id in ("@ghost:accounts.test", "@someone:remote.test"):
        reply = await client.call("GET", f"/profile/{q(user_id)}")
        assert reply.status == 404 and reply.body["errcode"] == "M_NOT_FOUND"
    invalid = await client.call("GET", f"/profile/{q('not-a-user')}")
    assert invalid.status == 400
