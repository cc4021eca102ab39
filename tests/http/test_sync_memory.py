"""What a woken /sync serves from memory (recent events, key counts, unread counts, the
device-list shortcut) must match what the database says, whatever changed in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.e2e_helpers import DeviceUser, register_device_users, signed_key, upload
from tests.http.room_helpers import Client, q
from tests.http.sync_helpers import bodies, receipt, send_text, sync, timeline


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[DeviceUser]:
    return await register_device_users(client, "alice", "bob")


async def woken_sync(user: DeviceUser, token: str, action: Any) -> dict[str, Any]:
    """Long-poll from `token`, do `action` while it waits, return what woke it."""
    poll = asyncio.create_task(sync(user, since=token, timeout=5000))
    await asyncio.sleep(0.2)
    await action()
    return await asyncio.wait_for(poll, 4)


async def test_key_counts_follow_upload_and_claim_after_being_read(
    users: list[DeviceUser],
) -> None:
    alice, bob = users
    body = await sync(alice)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    keys = {f"signed_curve25519:K{i}": signed_key(f"k{i}") for i in range(3)}
    assert (await upload(alice, one_time_keys=keys)).status == 200
    body = await sync(alice, since=body["next_batch"])
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 3}
    request = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    assert (await bob.call("POST", "/keys/claim", request)).status == 200
    body = await sync(alice, since=body["next_batch"])
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert (await upload(alice, fallback_keys={"signed_curve25519:F": signed_key("f")})).status
    body = await sync(alice, since=body["next_batch"])
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]


async def test_woken_sync_gives_transaction_id_only_to_the_sending_device(
    users: list[DeviceUser],
) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    alice_token = (await sync(alice))["next_batch"]
    bob_token = (await sync(bob))["next_batch"]
    bob_poll = asyncio.create_task(sync(bob, since=bob_token, timeout=5000))
    body = await woken_sync(alice, alice_token, lambda: send_text(alice, room_id, "hi"))
    (own,) = timeline(body, room_id)
    assert own["unsigned"]["transaction_id"] == "t-hi"
    (seen,) = timeline(await asyncio.wait_for(bob_poll, 4), room_id)
    assert seen["event_id"] == own["event_id"]
    assert "transaction_id" not in seen["unsigned"]


async def test_incremental_sync_serves_event_redacted_after_it_was_sent(
    users: list[DeviceUser],
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    token = (await sync(alice))["next_batch"]
    event_id = await send_text(alice, room_id, "secret")
    # Read once, so the event is served from memory at least once before the redaction.
    assert bodies(timeline(await sync(alice, since=token), room_id)) == ["secret"]
    path = f"/rooms/{q(room_id)}/redact/{q(event_id)}/r1"
    assert (await alice.call("PUT", path, {"reason": "oops"})).status == 200
    events = timeline(await sync(alice, since=token), room_id)
    redacted = next(e for e in events if e["event_id"] == event_id)
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["type"] == "m.room.redaction"
    assert [e["type"] for e in events] == ["m.room.message", "m.room.redaction"]


async def test_limited_timeline_from_memory_leaves_older_events_to_prev_batch(
    users: list[DeviceUser],
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    token = (await sync(alice))["next_batch"]
    for text in ("one", "two", "three"):
        await send_text(alice, room_id, text)
    body = await sync(alice, since=token, filter={"room": {"timeline": {"limit": 2}}})
    room = body["rooms"]["join"][room_id]
    assert bodies(room["timeline"]["events"]) == ["two", "three"]
    assert room["timeline"]["limited"] is True
    older = await alice.call(
        "GET",
        f"/rooms/{q(room_id)}/messages",
        query={"from": room["timeline"]["prev_batch"], "dir": "b", "limit": "1"},
    )
    assert bodies(older.body["chunk"]) == ["one"]


async def test_unread_counts_follow_messages_and_receipts(users: list[DeviceUser]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    token = (await sync(bob))["next_batch"]

    def unread(body: dict[str, Any]) -> int:
        count: int = body["rooms"]["join"][room_id]["unread_notifications"]["notification_count"]
        return count

    await send_text(alice, room_id, "one")
    body = await sync(bob, since=token)
    assert unread(body) == 1
    body = await woken_sync(bob, body["next_batch"], lambda: send_text(alice, room_id, "two"))
    assert unread(body) == 2
    last = await send_text(alice, room_id, "three")
    await receipt(bob, room_id, last)
    body = await sync(bob, since=body["next_batch"])
    assert unread(body) == 0
    await send_text(alice, room_id, "four")
    body = await sync(bob, since=body["next_batch"])
    assert unread(body) == 1
    # Sending reads up to one's own event.
    await send_text(bob, room_id, "reply")
    assert unread(await sync(bob, since=body["next_batch"])) == 0


async def test_new_member_shows_in_device_lists_of_a_woken_sync(
    users: list[DeviceUser],
) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    token = (await sync(alice))["next_batch"]
    await send_text(alice, room_id, "before")  # not a membership change: no device lists
    body = await sync(alice, since=token)
    assert body["device_lists"]["changed"] == []

    async def join() -> None:
        assert (await bob.join(room_id)).status == 200

    body = await woken_sync(alice, body["next_batch"], join)
    assert bob.user_id in body["device_lists"]["changed"]
