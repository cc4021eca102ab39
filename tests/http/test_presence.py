"""Presence (C-S "Presence") through the real application on a real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from homeserver.services.presence import PresenceService
from homeserver.storage.presence import PresenceStore
from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.http.sync_helpers import send_text, sync

# Short timeouts so the sweeps below can observe them.
FAST = {"presence": {"enabled": True, "idle_timeout": 0.3, "offline_timeout": 0.3}}


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool, **FAST) as client:
        yield client
        assert client.deps.presence is not None
        await client.deps.presence.close()


@pytest.fixture
async def room(client: Client) -> tuple[User, User, str]:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    return alice, bob, room_id


def presence_service(client: Client) -> PresenceService:
    assert client.deps.presence is not None
    return client.deps.presence.presence


async def put_status(user: User, target: str | None = None, **body: Any) -> Any:
    return await user.call("PUT", f"/presence/{q(target or user.user_id)}/status", body)


async def get_status(user: User, target: str) -> Any:
    return await user.call("GET", f"/presence/{q(target)}/status")


def presence_of(body: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    return [e["content"] for e in body["presence"]["events"] if e["sender"] == user_id]


async def test_user_sets_and_reads_presence_with_status_message(
    room: tuple[User, User, str],
) -> None:
    alice, bob, _ = room
    reply = await put_status(alice, presence="online", status_msg="In a meeting")
    assert (reply.status, reply.body) == (200, {})
    for reader in (alice, bob):
        got = await get_status(reader, alice.user_id)
        assert got.status == 200, got.body
        assert got.body["presence"] == "online"
        assert got.body["status_msg"] == "In a meeting"
        assert got.body["currently_active"] is True
        assert 0 <= got.body["last_active_ago"] < 5000
    # Without status_msg the message stays; null clears it.
    assert (await put_status(alice, presence="unavailable")).status == 200
    got = await get_status(bob, alice.user_id)
    assert (got.body["presence"], got.body["status_msg"]) == ("unavailable", "In a meeting")
    assert (await put_status(alice, presence="online", status_msg=None)).status == 200
    assert "status_msg" not in (await get_status(bob, alice.user_id)).body


async def test_cannot_set_presence_of_another_user(room: tuple[User, User, str]) -> None:
    alice, bob, _ = room
    reply = await put_status(bob, alice.user_id, presence="offline")
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"presence": "busy"}, "M_INVALID_PARAM"),
        ({"presence": "online", "status_msg": 5}, "M_BAD_JSON"),
    ],
)
async def test_bad_presence_bodies_are_refused(
    room: tuple[User, User, str], body: dict[str, Any], errcode: str
) -> None:
    alice, _, _ = room
    reply = await alice.call("PUT", f"/presence/{q(alice.user_id)}/status", body)
    assert (reply.status, reply.body["errcode"]) == (400, errcode)


async def test_presence_is_hidden_from_users_sharing_no_room(
    client: Client, room: tuple[User, User, str]
) -> None:
    alice, _, _ = room
    (carol,) = await register_users(client, "carol")
    assert (await put_status(alice, presence="online")).status == 200
    reply = await get_status(carol, alice.user_id)
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")


async def test_presence_change_wakes_a_room_members_long_poll(
    room: tuple[User, User, str],
) -> None:
    alice, bob, _ = room
    await asyncio.sleep(0.2)  # let the join's activity settle
    token = (await sync(bob, set_presence="offline"))["next_batch"]
    poll = asyncio.create_task(sync(bob, since=token, timeout=5000, set_presence="offline"))
    await asyncio.sleep(0.2)
    assert not poll.done()
    assert (await put_status(alice, presence="unavailable", status_msg="away")).status == 200
    body = await asyncio.wait_for(poll, 3)
    assert presence_of(body, alice.user_id) == [
        {
            "presence": "unavailable",
            "status_msg": "away",
            "last_active_ago": pytest.approx(0, abs=3000),
        }
    ]
    # Already delivered: the next incremental sync does not repeat it.
    again = await sync(bob, since=body["next_batch"], set_presence="offline")
    assert presence_of(again, alice.user_id) == []


async def test_initial_sync_has_room_members_presence_and_not_strangers(
    client: Client, room: tuple[User, User, str]
) -> None:
    alice, bob, _ = room
    (carol,) = await register_users(client, "carol")
    assert (await put_status(alice, presence="online", status_msg="hi")).status == 200
    assert (await put_status(carol, presence="online")).status == 200
    body = await sync(bob, set_presence="offline")
    assert presence_of(body, alice.user_id)[0]["status_msg"] == "hi"
    assert presence_of(body, carol.user_id) == []


async def test_sync_set_presence_marks_the_user(room: tuple[User, User, str]) -> None:
    alice, bob, _ = room
    assert (await put_status(alice, presence="offline")).status == 200
    await sync(alice, set_presence="offline")  # does not mark her online
    assert (await get_status(bob, alice.user_id)).body["presence"] == "offline"
    await sync(alice)  # omitted: online
    assert (await get_status(bob, alice.user_id)).body["presence"] == "online"
    await sync(alice, set_presence="unavailable")
    assert (await get_status(bob, alice.user_id)).body["presence"] == "unavailable"
    reply = await alice.call("GET", "/sync", query={"set_presence": "away"})
    assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_idle_user_becomes_unavailable_and_activity_brings_them_back(
    client: Client, room: tuple[User, User, str]
) -> None:
    alice, bob, room_id = room
    presence = presence_service(client)
    await sync(alice)
    token = (await sync(alice))["next_batch"]
    # A long-poll in progress keeps alice connected, so only the idle timeout applies.
    holding = asyncio.create_task(sync(alice, since=token, timeout=2000))
    await asyncio.sleep(0.5)
    assert not holding.done()
    await presence.sweep()
    assert (await get_status(bob, alice.user_id)).body["presence"] == "unavailable"
    await send_text(alice, room_id, "back")  # a pro-active event (hooks run after the reply)
    for _ in range(50):
        got = (await get_status(bob, alice.user_id)).body
        if got["presence"] == "online":
            break
        await asyncio.sleep(0.05)
    assert (got["presence"], got["currently_active"]) == ("online", True)
    await holding


async def test_user_with_no_sync_goes_offline(client: Client, room: tuple[User, User, str]) -> None:
    alice, bob, _ = room
    await sync(alice)
    assert (await get_status(bob, alice.user_id)).body["presence"] == "online"
    await asyncio.sleep(0.5)
    await presence_service(client).sweep()
    assert (await get_status(bob, alice.user_id)).body["presence"] == "offline"


async def test_status_message_survives_a_restart(
    client: Client, room: tuple[User, User, str], pool: asyncpg.Pool
) -> None:
    alice, _, _ = room
    assert (await put_status(alice, presence="unavailable", status_msg="lunch")).status == 200
    restarted = PresenceService(
        store=PresenceStore(pool),
        stream=PresenceService.new_stream(),
        rooms_of_user=client.deps.engine.rooms.get_rooms_for_user,
        server_name="test.local",
    )
    await restarted.start()
    try:
        state = restarted.get(alice.user_id)
        assert state is not None
        assert (state.presence, state.status_msg) == ("unavailable", "lunch")
    finally:
        await restarted.close()


async def test_presence_can_be_disabled(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    off = {"presence": {"enabled": False}}
    async with running_server(tmp_path, migrated_db_dsn, pool, **off) as client:
        alice, bob = await register_users(client, "alice", "bob")
        room_id = await alice.create_room(preset="public_chat")
        assert (await bob.join(room_id)).status == 200
        assert (await put_status(alice, presence="online", status_msg="x")).status == 200
        assert (await get_status(bob, alice.user_id)).body == {"presence": "offline"}
        assert (await sync(bob))["presence"]["events"] == []


async def test_incremental_sync_leaves_out_changes_of_strangers(
    client: Client, room: tuple[User, User, str]
) -> None:
    alice, bob, _ = room
    (carol,) = await register_users(client, "carol")
    await asyncio.sleep(0.2)  # let the join's activity settle
    token = (await sync(bob, set_presence="offline"))["next_batch"]
    assert (await put_status(carol, presence="online", status_msg="hidden")).status == 200
    assert (await put_status(alice, presence="online", status_msg="shown")).status == 200
    body = await sync(bob, since=token, set_presence="offline")
    senders = {e["sender"] for e in body["presence"]["events"]}
    assert alice.user_id in senders and carol.user_id not in senders
