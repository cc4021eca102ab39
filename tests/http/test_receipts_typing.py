"""Typing, receipts, read markers and unread counts through the real application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.http.sync_helpers import receipt, send_text, sync


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def room(client: Client) -> tuple[User, User, str]:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    return alice, bob, room_id


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> dict[str, Any] | None:
    room = body["rooms"]["join"].get(room_id)
    for event in (room or {}).get("ephemeral", {}).get("events", []):
        if event["type"] == event_type:
            found: dict[str, Any] = event
            return found
    return None


async def set_typing(user: User, room_id: str, typing: bool, timeout_ms: int = 30_000) -> Any:
    path = f"/rooms/{q(room_id)}/typing/{q(user.user_id)}"
    return await user.call("PUT", path, {"typing": typing, "timeout": timeout_ms})


def unread(body: dict[str, Any], room_id: str) -> dict[str, int]:
    counts: dict[str, int] = body["rooms"]["join"][room_id]["unread_notifications"]
    return counts


async def test_typing_shows_in_ephemeral_and_wakes_long_poll(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    token = (await sync(bob))["next_batch"]
    poll = asyncio.create_task(sync(bob, since=token, timeout=5000))
    await asyncio.sleep(0.2)
    assert (await set_typing(alice, room_id, True)).status == 200
    body = await asyncio.wait_for(poll, 2)
    typing = ephemeral(body, room_id, "m.typing")
    assert typing is not None and typing["content"]["user_ids"] == [alice.user_id]
    assert (await set_typing(alice, room_id, False)).status == 200
    after = await sync(bob, since=body["next_batch"])
    stopped = ephemeral(after, room_id, "m.typing")
    assert stopped is not None and stopped["content"]["user_ids"] == []


async def test_typing_times_out(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    assert (await set_typing(alice, room_id, True, timeout_ms=100)).status == 200
    token = (await sync(bob))["next_batch"]
    body = await sync(bob, since=token, timeout=3000)
    typing = ephemeral(body, room_id, "m.typing")
    assert typing is not None and typing["content"]["user_ids"] == []


async def test_typing_errors(room: tuple[User, User, str], client: Client) -> None:
    alice, bob, room_id = room
    other = await bob.call(
        "PUT", f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True}
    )
    assert other.status == 403
    missing = await alice.call("PUT", f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {})
    assert (missing.status, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    (carol,) = await register_users(client, "carol")
    outsider = await set_typing(carol, room_id, True)
    assert (outsider.status, outsider.body["errcode"]) == (403, "M_FORBIDDEN")


async def test_read_receipt_shows_in_ephemeral(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    event_id = await send_text(alice, room_id, "read me")
    token = (await sync(alice))["next_batch"]
    await receipt(bob, room_id, event_id)
    body = await sync(alice, since=token, timeout=2000)
    receipts = ephemeral(body, room_id, "m.receipt")
    assert receipts is not None
    assert bob.user_id in receipts["content"][event_id]["m.read"]
    assert "ts" in receipts["content"][event_id]["m.read"][bob.user_id]


async def test_private_receipt_is_only_shown_to_its_sender(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    event_id = await send_text(alice, room_id, "secret read")
    alice_token = (await sync(alice))["next_batch"]
    await receipt(bob, room_id, event_id, "m.read.private")
    assert ephemeral(await sync(alice, since=alice_token), room_id, "m.receipt") is None
    own = ephemeral(await sync(bob), room_id, "m.receipt")
    assert own is not None and bob.user_id in own["content"][event_id]["m.read.private"]


async def test_unread_counts_drop_after_read_receipt(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    await send_text(alice, room_id, "one")
    last = await send_text(alice, room_id, f"two {bob.user_id}")
    body = await sync(bob)
    assert unread(body, room_id)["notification_count"] == 2
    await receipt(bob, room_id, last)
    after = await sync(bob, since=body["next_batch"])
    assert unread(after, room_id) == {"notification_count": 0, "highlight_count": 0}


async def test_new_event_and_its_count_arrive_in_the_same_sync(
    room: tuple[User, User, str],
) -> None:
    alice, bob, room_id = room
    token = (await sync(bob))["next_batch"]
    poll = asyncio.create_task(sync(bob, since=token, timeout=5000))
    await asyncio.sleep(0.2)
    await send_text(alice, room_id, "count me")
    body = await asyncio.wait_for(poll, 3)
    assert unread(body, room_id)["notification_count"] == 1


async def test_notifications_lists_events_and_read_state(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    first = await send_text(alice, room_id, "n1")
    await send_text(alice, room_id, "n2")
    await receipt(bob, room_id, first)
    await sync(bob)  # push evaluation has run once a sync returns
    reply = await bob.call("GET", "/notifications")
    assert reply.status == 200
    listed = reply.body["notifications"]
    assert [n["event"]["content"]["body"] for n in listed] == ["n2", "n1"]
    assert [n["read"] for n in listed] == [False, True]
    assert listed[0]["room_id"] == room_id
    page = await bob.call("GET", "/notifications", query={"limit": "1"})
    assert len(page.body["notifications"]) == 1 and "next_token" in page.body
    rest = await bob.call(
        "GET", "/notifications", query={"from": page.body["next_token"], "limit": "5"}
    )
    assert [n["event"]["content"]["body"] for n in rest.body["notifications"]] == ["n1"]


async def test_read_markers_set_fully_read_and_receipt(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    event_id = await send_text(alice, room_id, "marker")
    reply = await bob.call(
        "POST", f"/rooms/{q(room_id)}/read_markers", {"m.fully_read": event_id, "m.read": event_id}
    )
    assert reply.status == 200
    body = await sync(bob)
    account_data = body["rooms"]["join"][room_id]["account_data"]["events"]
    assert {"type": "m.fully_read", "content": {"event_id": event_id}} in account_data
    receipts = ephemeral(body, room_id, "m.receipt")
    assert receipts is not None and bob.user_id in receipts["content"][event_id]["m.read"]


async def test_receipt_errors(room: tuple[User, User, str]) -> None:
    alice, bob, room_id = room
    event_id = await send_text(alice, room_id, "x")
    path = f"/rooms/{q(room_id)}/receipt"
    bad_type = await bob.call("POST", f"{path}/m.seen/{q(event_id)}", {})
    assert (bad_type.status, bad_type.body["errcode"]) == (400, "M_INVALID_PARAM")
    bad_thread = await bob.call("POST", f"{path}/m.read/{q(event_id)}", {"thread_id": ""})
    assert (bad_thread.status, bad_thread.body["errcode"]) == (400, "M_INVALID_PARAM")
    unknown = await bob.call("POST", f"{path}/m.read/{q('$nope')}", {})
    assert unknown.status == 404
