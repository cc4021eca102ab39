"""GET /sync through the real application (C-S "Syncing")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.http.sync_helpers import bodies, send_text, sync, timeline


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def test_initial_sync_shows_new_room_with_its_message(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(name="Lobby")
    await send_text(alice, room_id, "hello")
    body = await sync(alice)
    room = body["rooms"]["join"][room_id]
    events = room["timeline"]["events"]
    assert bodies(events) == ["hello"]
    assert events[0]["type"] == "m.room.create"
    # The whole short history fits in the timeline, so the state before it is empty.
    assert room["state"]["events"] == []
    assert room["timeline"]["limited"] is False
    assert room["summary"]["m.joined_member_count"] == 1
    assert room["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert events[-1]["unsigned"]["transaction_id"] == "t-hello"
    assert body["next_batch"].startswith("s")
    global_types = {e["type"] for e in body["account_data"]["events"]}
    assert "m.push_rules" in global_types


async def test_incremental_sync_returns_only_new_events(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    await send_text(alice, room_id, "one")
    first = await sync(alice)
    await send_text(alice, room_id, "two")
    second = await sync(alice, since=first["next_batch"])
    assert bodies(timeline(second, room_id)) == ["two"]
    assert [e["type"] for e in timeline(second, room_id)] == ["m.room.message"]
    third = await sync(alice, since=second["next_batch"])
    assert third["rooms"]["join"] == {}


async def test_long_poll_wakes_promptly_when_another_user_sends(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    token = (await sync(alice))["next_batch"]

    async def send_later() -> float:
        await asyncio.sleep(0.3)
        sent_at = time.monotonic()
        await send_text(bob, room_id, "ping")
        return sent_at

    sender = asyncio.create_task(send_later())
    body = await sync(alice, since=token, timeout=10_000)
    woke_at = time.monotonic()
    sent_at = await sender
    assert bodies(timeline(body, room_id)) == ["ping"]
    assert woke_at - sent_at < 0.5  # the send itself included; no polling interval


async def test_long_poll_times_out_with_empty_response(users: list[User]) -> None:
    alice, _ = users
    await alice.create_room()
    token = (await sync(alice))["next_batch"]
    started = time.monotonic()
    body = await sync(alice, since=token, timeout=300)
    assert time.monotonic() - started >= 0.28
    assert body["rooms"]["join"] == {}
    assert body["next_batch"] == token


async def test_since_token_stays_valid_after_restart(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        (alice,) = await register_users(client, "alice")
        room_id = await alice.create_room()
        await send_text(alice, room_id, "before")
        token = (await sync(alice))["next_batch"]
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        alice.client = client
        await send_text(alice, room_id, "after")
        body = await sync(alice, since=token)
        assert bodies(timeline(body, room_id)) == ["after"]


async def test_limited_timeline_has_prev_batch_and_state_before_it(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(name="Busy")
    for i in range(5):
        await send_text(alice, room_id, f"m{i}")
    body = await sync(alice, filter={"room": {"timeline": {"limit": 2}}})
    room = body["rooms"]["join"][room_id]
    assert bodies(room["timeline"]["events"]) == ["m3", "m4"]
    assert room["timeline"]["limited"] is True
    assert room["timeline"]["prev_batch"].startswith("s")
    state_types = {e["type"] for e in room["state"]["events"]}
    assert {"m.room.create", "m.room.member", "m.room.name"} <= state_types


async def test_incremental_limited_sync_sends_state_delta(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    token = (await sync(alice))["next_batch"]
    assert (await alice.put_state(room_id, "m.room.topic", {"topic": "new"})).status == 200
    for i in range(3):
        await send_text(alice, room_id, f"x{i}")
    body = await sync(alice, since=token, filter={"room": {"timeline": {"limit": 2}}})
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    assert [e["type"] for e in room["state"]["events"]] == ["m.room.topic"]


async def test_filter_types_and_uploaded_filter_id(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    await send_text(alice, room_id, "only me")
    created = await alice.call(
        "POST",
        f"/user/{alice.user_id}/filter",
        {"room": {"timeline": {"types": ["m.room.message"]}}},
    )
    assert created.status == 200
    filter_id = created.body["filter_id"]
    fetched = await alice.call("GET", f"/user/{alice.user_id}/filter/{filter_id}")
    assert fetched.body == {"room": {"timeline": {"types": ["m.room.message"]}}}
    body = await sync(alice, filter=filter_id)
    assert [e["type"] for e in timeline(body, room_id)] == ["m.room.message"]


async def test_lazy_loading_sends_only_senders_members(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    await send_text(alice, room_id, "from alice")
    body = await sync(
        bob,
        filter={"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}}},
    )
    state = body["rooms"]["join"][room_id]["state"]["events"]
    members = sorted(e["state_key"] for e in state if e["type"] == "m.room.member")
    assert members == sorted([alice.user_id, bob.user_id])  # the sender, and bob himself
    full = await sync(bob, filter={"room": {"timeline": {"limit": 1}}})
    full_state = full["rooms"]["join"][room_id]["state"]["events"]
    assert len([e for e in full_state if e["type"] == "m.room.member"]) == 2


async def test_invite_appears_with_stripped_state(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(name="Secret")
    token = (await sync(bob))["next_batch"]
    assert (await alice.invite(room_id, bob.user_id)).status == 200
    body = await sync(bob, since=token, timeout=1000)
    invite_state = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    by_type = {e["type"]: e for e in invite_state}
    assert by_type["m.room.name"]["content"] == {"name": "Secret"}
    assert "m.room.create" in by_type
    member = [e for e in invite_state if e["type"] == "m.room.member"]
    assert {"state_key": bob.user_id, "content": {"membership": "invite"}}.items() <= {
        "state_key": member[-1]["state_key"],
        "content": {"membership": member[-1]["content"]["membership"]},
    }.items()
    assert all(set(e) == {"type", "state_key", "sender", "content"} for e in invite_state)


async def test_left_room_appears_once_and_with_include_leave(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    token = (await sync(bob))["next_batch"]
    assert (await bob.leave(room_id)).status == 200
    body = await sync(bob, since=token)
    left = body["rooms"]["leave"][room_id]
    assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"
    assert room_id not in body["rooms"]["join"]
    assert room_id not in (await sync(bob))["rooms"]["leave"]
    with_leave = await sync(bob, filter={"room": {"include_leave": True}})
    assert room_id in with_leave["rooms"]["leave"]


async def test_history_visibility_joined_hides_earlier_events(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    await alice.put_state(room_id, "m.room.history_visibility", {"history_visibility": "joined"})
    await send_text(alice, room_id, "before bob")
    assert (await bob.join(room_id)).status == 200
    await send_text(alice, room_id, "after bob")
    body = await sync(bob)
    assert bodies(timeline(body, room_id)) == ["after bob"]


async def test_bad_since_token_is_invalid_param(users: list[User]) -> None:
    alice, _ = users
    for bad in ("nonsense", "s1_2", "s-1_0_0_0_0_0"):
        reply = await alice.call("GET", "/sync", query={"since": bad})
        assert reply.status == 400
        assert reply.body["errcode"] == "M_INVALID_PARAM"
    reply = await alice.call("GET", "/sync", query={"filter": "{not json"})
    assert reply.status == 400


async def test_sync_needs_a_token(client: Client) -> None:
    reply = await client.call("GET", "/sync")
    assert reply.status == 401
    assert reply.body["errcode"] == "M_MISSING_TOKEN"


async def test_full_state_resends_state_and_returns_at_once(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(name="Again")
    token = (await sync(alice))["next_batch"]
    started = time.monotonic()
    body = await sync(alice, since=token, full_state=True, timeout=5000)
    assert time.monotonic() - started < 2
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["events"] == []
    state_types = {e["type"] for e in room["state"]["events"]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= state_types


async def test_redacted_event_is_served_redacted(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    event_id = await send_text(alice, room_id, "oops")
    reply = await alice.call(
        "PUT", f"/rooms/{q(room_id)}/redact/{q(event_id)}/r1", {"reason": "typo"}
    )
    assert reply.status == 200, reply.body
    events = timeline(await sync(alice), room_id)
    redacted = next(e for e in events if e["event_id"] == event_id)
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["type"] == "m.room.redaction"


async def test_state_events_carry_what_they_replaced(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(name="Old name")
    token = (await sync(alice))["next_batch"]
    assert (await alice.put_state(room_id, "m.room.name", {"name": "New name"})).status == 200
    (renamed,) = timeline(await sync(alice, since=token), room_id)
    assert renamed["content"] == {"name": "New name"}
    assert renamed["unsigned"]["prev_content"] == {"name": "Old name"}
    assert renamed["unsigned"]["replaces_state"].startswith("$")


async def test_heroes_only_for_rooms_without_a_name(users: list[User]) -> None:
    alice, bob = users
    unnamed = await alice.create_room(preset="public_chat")
    named = await alice.create_room(preset="public_chat", name="Lobby")
    for room_id in (unnamed, named):
        assert (await bob.join(room_id)).status == 200
        await send_text(alice, room_id, "hi")
    # One timeline event (alice's), so members come only through lazy-loaded state.
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    rooms = (await sync(alice, filter=lazy))["rooms"]["join"]
    assert rooms[unnamed]["summary"] == {
        "m.heroes": [bob.user_id],
        "m.joined_member_count": 2,
        "m.invited_member_count": 0,
    }
    # sync.yaml RoomSummary: heroes are required only without a name or canonical alias.
    assert rooms[named]["summary"] == {"m.joined_member_count": 2, "m.invited_member_count": 0}
    named_members = [
        e["state_key"] for e in rooms[named]["state"]["events"] if e["type"] == "m.room.member"
    ]
    assert bob.user_id not in named_members
    unnamed_members = [
        e["state_key"] for e in rooms[unnamed]["state"]["events"] if e["type"] == "m.room.member"
    ]
    assert bob.user_id in unnamed_members


async def test_long_poll_sees_an_invite_that_arrives_while_it_waits(users: list[User]) -> None:
    """The memberships read before waiting are read again when the user's own membership
    changes during the wait (a new room comes into view)."""
    alice, bob = users
    shared = await alice.create_room(preset="public_chat")
    assert (await bob.join(shared)).status == 200
    secret = await alice.create_room(name="Later")
    token = (await sync(bob))["next_batch"]

    async def invite_later() -> None:
        await asyncio.sleep(0.3)
        assert (await alice.invite(secret, bob.user_id)).status == 200

    inviter = asyncio.create_task(invite_later())
    body = await sync(bob, since=token, timeout=10_000)
    await inviter
    assert secret in body["rooms"]["invite"]
    assert shared not in body["rooms"]["join"]  # nothing new there


async def test_long_poll_covers_many_rooms_and_only_the_room_with_news(users: list[User]) -> None:
    alice, bob = users
    rooms = [await alice.create_room(preset="public_chat") for _ in range(4)]
    for room_id in rooms:
        assert (await bob.join(room_id)).status == 200
    for room_id in rooms:
        await send_text(alice, room_id, f"hello {room_id}")
    first = await sync(bob)
    assert [bodies(timeline(first, r))[-1] for r in rooms] == [f"hello {r}" for r in rooms]
    assert set(first["rooms"]["join"]) == set(rooms)

    async def send_later() -> None:
        await asyncio.sleep(0.3)
        await send_text(alice, rooms[2], "news")

    sender = asyncio.create_task(send_later())
    body = await sync(bob, since=first["next_batch"], timeout=10_000)
    await sender
    assert list(body["rooms"]["join"]) == [rooms[2]]
    assert bodies(timeline(body, rooms[2])) == ["news"]
    # Counts are read after push evaluation of "news": the greeting and the news.
    counts = body["rooms"]["join"][rooms[2]]["unread_notifications"]
    assert counts == {"notification_count": 2, "highlight_count": 0}
