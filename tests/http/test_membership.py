"""Room membership through the real application: join, invite, leave, kick, ban, unban, knock,
forget, /joined_rooms, and the errors the spec names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from homeserver.storage.room_directory import RoomDirectoryStore
from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users, state_event


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def membership(client: Client, room_id: str, user_id: str) -> str | None:
    event = await state_event(client.deps, room_id, "m.room.member", user_id)
    return None if event is None else event.content["membership"]


async def joined_rooms(user: User) -> list[str]:
    reply = await user.call("GET", "/joined_rooms")
    assert reply.status == 200
    rooms: list[str] = reply.body["joined_rooms"]
    return rooms


async def test_invite_join_leave_and_rejoin_needs_a_new_invite(
    client: Client, users: list[User]
) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="private_chat")
    assert (await bob.join(room_id)).body["errcode"] == "M_FORBIDDEN"
    assert (await alice.invite(room_id, bob.user_id)).status == 200
    assert await membership(client, room_id, bob.user_id) == "invite"
    joined = await bob.call("POST", f"/rooms/{q(room_id)}/join", {"reason": "hello"})
    assert joined.status == 200 and joined.body == {"room_id": room_id}
    member = await state_event(client.deps, room_id, "m.room.member", bob.user_id)
    assert dict(member.content) == {"membership": "join", "displayname": "bob", "reason": "hello"}
    assert await joined_rooms(bob) == [room_id]
    assert (await bob.leave(room_id, reason="bye")).status == 200
    member = await state_event(client.deps, room_id, "m.room.member", bob.user_id)
    assert dict(member.content) == {"membership": "leave", "reason": "bye"}
    assert await joined_rooms(bob) == []
    # An invite-only room: leaving means needing a new invite.
    rejoin = await bob.join(room_id)
    assert rejoin.status == 403 and rejoin.body["errcode"] == "M_FORBIDDEN"
    await alice.invite(room_id, bob.user_id)
    assert (await bob.join(room_id)).status == 200
    assert await membership(client, room_id, bob.user_id) == "join"


async def test_public_room_can_be_joined_by_alias_and_rejoined(
    client: Client, users: list[User]
) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat", room_alias_name="lobby")
    reply = await bob.join("#lobby:accounts.test")
    assert reply.status == 200 and reply.body == {"room_id": room_id}
    await bob.leave(room_id)
    assert (await bob.join(room_id)).status == 200
    assert sorted(await joined_rooms(alice)) == [room_id]


async def test_joining_twice_sends_no_second_event(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    count = await pool.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id)
    assert (await bob.join(room_id)).status == 200
    assert await pool.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id) == count


async def test_inviting_an_invited_user_is_ok_and_a_member_is_forbidden(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, bob, carol = users
    room_id = await alice.create_room()
    await alice.invite(room_id, bob.user_id)
    count = await pool.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id)
    assert (await alice.invite(room_id, bob.user_id)).status == 200
    assert await pool.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id) == count
    await bob.join(room_id)
    again = await alice.invite(room_id, bob.user_id)
    assert again.status == 403 and again.body["errcode"] == "M_FORBIDDEN"
    # Only members may invite.
    outsider = await carol.invite(room_id, "@dave:accounts.test")
    assert outsider.status == 403


async def test_kick_needs_power_and_a_kicked_user_may_rejoin_a_public_room(
    client: Client, users: list[User]
) -> None:
    alice, bob, carol = users
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    denied = await bob.call(
        "POST", f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id, "reason": "no"}
    )
    assert denied.status == 403 and denied.body["errcode"] == "M_FORBIDDEN"
    assert await membership(client, room_id, carol.user_id) == "join"
    kicked = await alice.call(
        "POST", f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id, "reason": "spam"}
    )
    assert kicked.status == 200 and kicked.body == {}
    member = await state_event(client.deps, room_id, "m.room.member", carol.user_id)
    assert dict(member.content) == {"membership": "leave", "reason": "spam"}
    assert member.sender == alice.user_id
    not_in_room = await alice.call("POST", f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id})
    assert not_in_room.status == 403
    assert (await carol.join(room_id)).status == 200


async def test_ban_keeps_the_user_out_until_unbanned(client: Client, users: list[User]) -> None:
    alice, bob, carol = users
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    assert (
        await bob.call("POST", f"/rooms/{q(room_id)}/ban", {"user_id": carol.user_id})
    ).status == 403
    banned = await alice.call(
        "POST", f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id, "reason": "rude"}
    )
    assert banned.status == 200
    assert await membership(client, room_id, bob.user_id) == "ban"
    join = await bob.join(room_id)
    assert join.status == 403 and join.body["errcode"] == "M_FORBIDDEN"
    assert (await alice.invite(room_id, bob.user_id)).status == 403
    assert (await bob.leave(room_id)).status == 403
    await carol.join(room_id)
    not_allowed = await carol.call("POST", f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id})
    assert not_allowed.status == 403
    unbanned = await alice.call("POST", f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id})
    assert unbanned.status == 200
    assert await membership(client, room_id, bob.user_id) == "leave"
    not_banned = await alice.call("POST", f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id})
    assert not_banned.status == 403
    assert (await bob.join(room_id)).status == 200


async def test_banning_someone_never_in_the_room(client: Client, users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat")
    assert (
        await alice.call("POST", f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id})
    ).status == 200
    assert (await bob.join(room_id)).status == 403


async def test_knock_then_invite_then_join(client: Client, users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(
        room_alias_name="door",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
    )
    knocked = await bob.call("POST", f"/knock/{q('#door:accounts.test')}", {"reason": "let me in"})
    assert knocked.status == 200 and knocked.body == {"room_id": room_id}
    member = await state_event(client.deps, room_id, "m.room.member", bob.user_id)
    assert dict(member.content) == {
        "membership": "knock",
        "displayname": "bob",
        "reason": "let me in",
    }
    again = await bob.call("POST", f"/knock/{q(room_id)}", {})
    assert again.status == 200  # knocking again is allowed by the auth rules
    await alice.invite(room_id, bob.user_id)
    assert (await bob.join(room_id)).status == 200
    joined_knock = await bob.call("POST", f"/knock/{q(room_id)}", {})
    assert joined_knock.status == 403


async def test_knocking_on_a_public_room_is_forbidden(client: Client, users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat")
    reply = await bob.call("POST", f"/knock/{q(room_id)}", {})
    assert reply.status == 403 and reply.body["errcode"] == "M_FORBIDDEN"


async def test_knock_can_be_retracted_by_leaving(client: Client, users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    await bob.call("POST", f"/knock/{q(room_id)}", {})
    assert (await bob.leave(room_id)).status == 200
    assert await membership(client, room_id, bob.user_id) == "leave"


async def test_forget_only_after_leaving_and_rejoining_unforgets(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    store = RoomDirectoryStore(pool)
    early = await bob.call("POST", f"/rooms/{q(room_id)}/forget", {})
    assert early.status == 400 and early.body["errcode"] == "M_UNKNOWN"
    await bob.leave(room_id)
    forgot = await bob.call("POST", f"/rooms/{q(room_id)}/forget")
    assert forgot.status == 200 and forgot.body == {}
    assert await store.get_forgotten_room_ids(bob.user_id) == {room_id}
    assert await store.is_room_forgotten(bob.user_id, room_id)
    await bob.join(room_id)
    assert await store.get_forgotten_room_ids(bob.user_id) == set()
    never = await alice.call("POST", f"/rooms/{q('!nowhere:accounts.test')}/forget", {})
    assert never.status == 404


async def test_restricted_room_admits_members_of_the_allowed_room(
    client: Client, users: list[User]
) -> None:
    alice, bob, carol = users
    space = await alice.create_room(preset="public_chat", room_version="9")
    restricted = await alice.create_room(
        room_version="9",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }
        ],
    )
    outsider = await carol.join(restricted)
    assert outsider.status == 403 and outsider.body["errcode"] == "M_FORBIDDEN"
    await bob.join(space)
    assert (await bob.join(restricted)).status == 200
    member = await state_event(client.deps, restricted, "m.room.member", bob.user_id)
    assert member.content["join_authorised_via_users_server"] == alice.user_id


async def test_unknown_rooms_and_aliases_are_not_found(client: Client, users: list[User]) -> None:
    alice, *_ = users
    for target in ("!unknown:accounts.test", "#unknown:accounts.test", "!elsewhere:remote.test"):
        reply = await alice.join(target)
        assert reply.status == 404, target
        assert reply.body["errcode"] == "M_NOT_FOUND"
    invite = await alice.invite("!unknown:accounts.test", "@bob:accounts.test")
    assert invite.status == 404


async def test_inviting_users_of_other_servers_needs_federation(
    client: Client, users: list[User]
) -> None:
    alice, *_ = users
    room_id = await alice.create_room()
    reply = await alice.invite(room_id, "@someone:remote.test")
    assert reply.status == 403 and reply.body["errcode"] == "M_FORBIDDEN"


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({}, 400, "M_MISSING_PARAM"),
        ({"user_id": 5}, 400, "M_BAD_JSON"),
        ({"user_id": "bob"}, 400, "M_INVALID_PARAM"),
        ({"user_id": "@bob:accounts.test", "reason": ["x"]}, 400, "M_BAD_JSON"),
    ],
)
async def test_bad_membership_bodies(
    client: Client, users: list[User], body: dict[str, object], status: int, errcode: str
) -> None:
    alice, *_ = users
    room_id = await alice.create_room()
    for action in ("invite", "kick", "ban", "unban"):
        reply = await alice.call("POST", f"/rooms/{q(room_id)}/{action}", body)
        assert (reply.status, reply.body["errcode"]) == (status, errcode), action


async def test_not_json_and_bad_room_ids(client: Client, users: list[User]) -> None:
    alice, *_ = users
    room_id = await alice.create_room()
    broken = await alice.call("POST", f"/rooms/{q(room_id)}/invite", raw=b"[1,")
    assert broken.status == 400 and broken.body["errcode"] == "M_NOT_JSON"
    bad_id = await alice.call("POST", f"/rooms/{q('not-a-room')}/leave", {})
    assert bad_id.status == 400 and bad_id.body["errcode"] == "M_INVALID_PARAM"
    unauthenticated = await client.call("GET", "/joined_rooms")
    assert unauthenticated.status == 401


async def test_guests_join_only_rooms_whose_guest_access_is_can_join(
    client: Client, users: list[User]
) -> None:
    alice = users[0]
    registered = await client.call("POST", "/register", {}, query={"kind": "guest"})
    guest = User(client, registered.body["user_id"], registered.body["access_token"])
    open_room = await alice.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.guest_access",
                "state_key": "",
                "content": {"guest_access": "can_join"},
            }
        ],
    )
    closed_room = await alice.create_room(preset="public_chat")
    joined = await guest.call("POST", f"/rooms/{q(open_room)}/join", {})
    assert joined.status == 200, joined.body
    sent = await guest.send(open_room, {"msgtype": "m.text", "body": "hi"}, "g1")
    assert sent.status == 200, sent.body
    # C-S "Guest Access": "Servers MUST only allow guest users to join rooms if the
    # m.room.guest_access state event is present on the room, and has the value can_join."
    refused = await guest.call("POST", f"/join/{q(closed_room)}", {})
    assert (refused.status, refused.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    assert await membership(client, closed_room, guest.user_id) is None
    assert await membership(client, open_room, guest.user_id) == "join"
