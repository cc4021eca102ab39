"""C-S "Guest Access": upgrading a guest account, and guests leaving rooms that withdraw guest
access, against the real app and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import PASSWORD, SERVER_NAME, running_server
from tests.http.room_helpers import Client, User, q, register_users, state_event

CAN_JOIN = [
    {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}
]


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


async def new_guest(client: Client) -> User:
    reply = await client.call("POST", "/register", {}, query={"kind": "guest"})
    assert reply.status == 200, reply.body
    return User(client, reply.body["user_id"], reply.body["access_token"])


async def upgrade(client: Client, body: dict[str, Any]) -> Any:
    """The UIA round trip of /register with `body`; the final reply."""
    challenge = await client.call("POST", "/register", body)
    if challenge.status != 401:
        return challenge
    body = {**body, "auth": {"type": "m.login.dummy", "session": challenge.body["session"]}}
    return await client.call("POST", "/register", body)


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


async def test_guest_upgrade_keeps_the_user_id_devices_and_old_token(client: Client) -> None:
    guest = await new_guest(client)
    old_devices = await guest.call("GET", "/devices")
    assert old_devices.status == 200
    (old_device,) = old_devices.body["devices"]

    reply = await upgrade(
        client,
        {
            "username": localpart(guest.user_id),
            "password": PASSWORD,
            "guest_access_token": guest.token,
            "initial_device_display_name": "Laptop",
        },
    )

    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == guest.user_id
    assert reply.body["device_id"] != old_device["device_id"]
    me = await client.whoami(reply.body["access_token"])
    assert me.body["user_id"] == guest.user_id and me.body["is_guest"] is False
    # The guest's own token now acts as the full account, which may create rooms.
    assert (await client.whoami(guest.token)).body["is_guest"] is False
    assert (await guest.call("POST", "/createRoom", {})).status == 200
    devices = await guest.call("GET", "/devices")
    assert {d["device_id"] for d in devices.body["devices"]} == {
        old_device["device_id"],
        reply.body["device_id"],
    }
    # The account now logs in with the password it chose.
    login = await client.login(localpart(guest.user_id))
    assert login.status == 200, login.body


async def test_guest_upgrade_with_inhibit_login_issues_no_token(client: Client) -> None:
    guest = await new_guest(client)
    reply = await upgrade(
        client,
        {
            "username": localpart(guest.user_id),
            "password": PASSWORD,
            "guest_access_token": guest.token,
            "inhibit_login": True,
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body == {"user_id": guest.user_id, "home_server": SERVER_NAME}
    assert (await client.whoami(guest.token)).body["is_guest"] is False


async def test_guest_upgrade_needs_the_guests_own_username(client: Client) -> None:
    guest = await new_guest(client)
    other = await upgrade(
        client, {"username": "someone", "password": PASSWORD, "guest_access_token": guest.token}
    )
    assert (other.status, other.body["errcode"]) == (403, "M_FORBIDDEN")
    missing = await upgrade(client, {"password": PASSWORD, "guest_access_token": guest.token})
    assert (missing.status, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    assert (await client.whoami(guest.token)).body["is_guest"] is True


async def test_guest_upgrade_refuses_unknown_and_non_guest_tokens(client: Client) -> None:
    (alice,) = await register_users(client, "alice")
    for token in ("not-a-token", alice.token):
        reply = await upgrade(
            client, {"username": "alice", "password": PASSWORD, "guest_access_token": token}
        )
        assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN"), token


async def test_a_guest_account_upgrades_only_once(client: Client) -> None:
    guest = await new_guest(client)
    body = {"username": localpart(guest.user_id), "guest_access_token": guest.token}
    assert (await upgrade(client, body)).status == 200
    again = await upgrade(client, body)
    assert (again.status, again.body["errcode"]) == (403, "M_FORBIDDEN")


async def member_state(client: Client, room_id: str, user_id: str) -> str | None:
    event = await state_event(client.deps, room_id, "m.room.member", user_id)
    return None if event is None else str(event.content["membership"])


async def wait_for_membership(
    client: Client, room_id: str, user_id: str, expected: str
) -> str | None:
    for _ in range(100):
        current = await member_state(client, room_id, user_id)
        if current == expected:
            return current
        await asyncio.sleep(0.02)
    return await member_state(client, room_id, user_id)


async def test_guests_leave_when_guest_access_is_withdrawn(client: Client) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(preset="public_chat", initial_state=CAN_JOIN)
    guest = await new_guest(client)
    assert (await guest.call("POST", f"/rooms/{q(room_id)}/join", {})).status == 200
    assert (await bob.join(room_id)).status == 200

    changed = await alice.put_state(room_id, "m.room.guest_access", {"guest_access": "forbidden"})
    assert changed.status == 200, changed.body

    assert await wait_for_membership(client, room_id, guest.user_id, "leave") == "leave"
    leave = await state_event(client.deps, room_id, "m.room.member", guest.user_id)
    assert leave.sender == guest.user_id
    # Full members stay; the guest cannot come back.
    assert await member_state(client, room_id, bob.user_id) == "join"
    rejoin = await guest.call("POST", f"/rooms/{q(room_id)}/join", {})
    assert (rejoin.status, rejoin.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_guests_stay_while_guest_access_remains_can_join(client: Client) -> None:
    (alice,) = await register_users(client, "alice")
    room_id = await alice.create_room(preset="public_chat", initial_state=CAN_JOIN)
    guest = await new_guest(client)
    assert (await guest.call("POST", f"/rooms/{q(room_id)}/join", {})).status == 200
    # A topic change and a repeated can_join are no reason to leave.
    assert (await alice.put_state(room_id, "m.room.topic", {"topic": "hello"})).status == 200
    same = await alice.put_state(
        room_id, "m.room.guest_access", {"guest_access": "can_join", "x": 1}
    )
    assert same.status == 200
    # Withdrawing guest access in another room must not touch this one.
    other = await alice.create_room(preset="public_chat", initial_state=CAN_JOIN)
    assert (
        await alice.put_state(other, "m.room.guest_access", {"guest_access": "forbidden"})
    ).status == 200
    await asyncio.sleep(0.2)
    assert await member_state(client, room_id, guest.user_id) == "join"
