"""Two real Matrix clients (matrix-nio) chat through a running Veche, as users would.

Alice and Bob register and log in, share a private room, talk (Bob long-polls /sync), edit and
redact, page back through history, rename the room, change display names, type, send read
receipts and leave. Every assertion is about what the other client sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nio import (
    AsyncClient,
    JoinError,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ReceiptType,
    RedactedEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessagesError,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPreset,
    RoomPutStateResponse,
    RoomReadMarkersResponse,
    RoomRedactResponse,
    RoomSendError,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    UpdateReceiptMarkerResponse,
)

from tests.http.account_helpers import SERVER_NAME, Client, running_server

ALICE = f"@alice:{SERVER_NAME}"
BOB = f"@bob:{SERVER_NAME}"
EVE = f"@eve:{SERVER_NAME}"
PASSWORD = "nio chat password"


@dataclass
class Chat:
    alice: AsyncClient
    bob: AsyncClient
    room_id: str


async def logged_in(base_url: str, username: str, user_id: str) -> AsyncClient:
    """Register an account with one client, then sign in afresh with another (a new device)."""
    registering = AsyncClient(base_url, user_id)
    try:
        registered = await registering.register(username, PASSWORD, device_name="signup")
        assert isinstance(registered, RegisterResponse), registered
    finally:
        await registering.close()
    client = AsyncClient(base_url, user_id)
    login = await client.login(PASSWORD, device_name=f"{username}'s laptop")
    assert isinstance(login, LoginResponse), login
    assert login.device_id != registered.device_id
    return client


async def synced(client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
    response = await client.sync(timeout=timeout_ms)
    assert isinstance(response, SyncResponse), response
    return response


def texts(events: list[Any]) -> list[str]:
    return [event.body for event in events if isinstance(event, RoomMessageText)]


async def send_text(client: AsyncClient, room_id: str, body: str, **extra: Any) -> str:
    sent = await client.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": body, **extra}
    )
    assert isinstance(sent, RoomSendResponse), sent
    event_id: str = sent.event_id
    return event_id


@pytest.fixture
async def server(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as server:
        yield server


@pytest.fixture
async def chat(server: Client) -> AsyncIterator[Chat]:
    """Alice creates a private room and invites Bob; Bob sees the invite in /sync and joins."""
    alice = await logged_in(server.base_url, "alice", ALICE)
    bob = await logged_in(server.base_url, "bob", BOB)
    try:
        await synced(alice)
        await synced(bob)
        created = await alice.room_create(name="Plans", preset=RoomPreset.private_chat)
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        invited = await alice.room_invite(room_id, BOB)
        assert isinstance(invited, RoomInviteResponse), invited

        invite_sync = await synced(bob)
        assert room_id in invite_sync.rooms.invite
        assert room_id in bob.invited_rooms
        assert bob.invited_rooms[room_id].name == "Plans"  # from the invite's stripped state

        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        await synced(bob)
        assert room_id in bob.rooms and room_id not in bob.invited_rooms
        await synced(alice)
        assert set(alice.rooms[room_id].users) == {ALICE, BOB}
        yield Chat(alice, bob, room_id)
    finally:
        await alice.close()
        await bob.close()


async def test_bob_long_polls_and_wakes_on_alices_message_then_replies(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    waiting = asyncio.create_task(bob.sync(timeout=10_000))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "the long-poll returned before anything happened"
    started = time.monotonic()
    hello = await send_text(alice, room_id, "hello bob")
    woke = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 2
    assert isinstance(woke, SyncResponse), woke
    received = woke.rooms.join[room_id].timeline.events
    assert texts(received) == ["hello bob"]
    assert received[-1].event_id == hello and received[-1].sender == ALICE

    await send_text(
        bob, room_id, "hi alice", **{"m.relates_to": {"m.in_reply_to": {"event_id": hello}}}
    )
    reply_sync = await synced(alice)
    seen_by_alice = reply_sync.rooms.join[room_id].timeline.events
    assert texts(seen_by_alice) == ["hello bob", "hi alice"]
    reply = seen_by_alice[-1]
    assert isinstance(reply, RoomMessageText)
    assert (reply.sender, reply.body) == (BOB, "hi alice")
    assert reply.source["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": hello}}


async def test_edits_and_redactions_show_when_paging_back_through_history(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    first = await send_text(alice, room_id, "first")
    secret = await send_text(alice, room_id, "my password is hunter2")
    bobs = await send_text(bob, room_id, "bob was here")
    edit = await send_text(
        alice,
        room_id,
        "* first (edited)",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "first (edited)"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": first},
        },
    )
    redacted = await alice.room_redact(room_id, secret, reason="oops")
    assert isinstance(redacted, RoomRedactResponse), redacted

    for client in (alice, bob):
        await synced(client)
        history: list[Any] = []
        token = client.next_batch
        while True:
            page = await client.room_messages(
                room_id, start=token, direction=MessageDirection.back, limit=3
            )
            assert isinstance(page, RoomMessagesResponse), page
            assert len(page.chunk) <= 3
            history.extend(page.chunk)
            if not page.chunk or page.end is None:
                break
            token = page.end
        ids = [event.event_id for event in history]
        assert len(ids) == len(set(ids)), "pages overlap"
        # Newest first: the redaction, the edit, Bob's line, the redacted secret, the first line.
        messages = [e for e in history if isinstance(e, (RoomMessageText, RedactedEvent))]
        assert [e.event_id for e in messages[:4]] == [edit, bobs, secret, first]
        assert texts(messages) == ["* first (edited)", "bob was here", "first"]
        gone = messages[2]
        assert isinstance(gone, RedactedEvent), gone
        assert gone.source["content"] == {}
        assert gone.reason == "oops" and gone.redacter == ALICE
        assert "hunter2" not in str([e.source for e in history])
        edit_event = messages[0]
        assert edit_event.source["content"]["m.relates_to"] == {
            "rel_type": "m.replace",
            "event_id": first,
        }
        # History starts with the room's creation once all pages are read.
        assert history[-1].source["type"] == "m.room.create"


async def test_room_name_topic_and_display_name_reach_the_other_member(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    named = await alice.room_put_state(room_id, "m.room.name", {"name": "Weekend plans"})
    assert isinstance(named, RoomPutStateResponse), named
    topic = await alice.room_put_state(room_id, "m.room.topic", {"topic": "hiking or not"})
    assert isinstance(topic, RoomPutStateResponse), topic
    await synced(bob)
    room = bob.rooms[room_id]
    assert (room.name, room.topic) == ("Weekend plans", "hiking or not")

    state = await bob.room_get_state(room_id)
    assert isinstance(state, RoomGetStateResponse), state
    by_type = {(e["type"], e["state_key"]): e["content"] for e in state.events}
    assert by_type[("m.room.name", "")] == {"name": "Weekend plans"}
    assert by_type[("m.room.topic", "")]["topic"] == "hiking or not"

    renamed = await alice.set_displayname("Alice A.")
    assert renamed.transport_response is not None and renamed.transport_response.status == 200
    changed = await synced(bob)
    members = [
        e for e in changed.rooms.join[room_id].timeline.events if isinstance(e, RoomMemberEvent)
    ]
    assert [(m.state_key, m.membership, m.content.get("displayname")) for m in members] == [
        (ALICE, "join", "Alice A.")
    ]
    assert bob.rooms[room_id].user_name(ALICE) == "Alice A."


async def test_typing_and_read_receipts_are_seen_by_the_other_member(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    typing = await alice.room_typing(room_id, True, timeout=10_000)
    assert isinstance(typing, RoomTypingResponse), typing
    await synced(bob)
    assert bob.rooms[room_id].typing_users == [ALICE]

    message = await send_text(alice, room_id, "are you reading this?")
    stopped = await alice.room_typing(room_id, False)
    assert isinstance(stopped, RoomTypingResponse), stopped
    await synced(bob)
    assert bob.rooms[room_id].typing_users == []

    receipt = await bob.update_receipt_marker(room_id, message, ReceiptType.read, thread_id=None)
    assert isinstance(receipt, UpdateReceiptMarkerResponse), receipt
    markers = await bob.room_read_markers(room_id, fully_read_event=message, read_event=message)
    assert isinstance(markers, RoomReadMarkersResponse), markers
    await synced(alice)
    seen = alice.rooms[room_id].read_receipts[BOB]
    assert (seen.event_id, seen.receipt_type) == (message, "m.read")

    threaded = await send_text(alice, room_id, "and this one?")
    main_receipt = await bob.update_receipt_marker(room_id, threaded, ReceiptType.read)
    assert isinstance(main_receipt, UpdateReceiptMarkerResponse), main_receipt
    await synced(alice)
    assert alice.rooms[room_id].threaded_read_receipts[BOB]["main"].event_id == threaded


async def test_bob_leaves_and_alice_sees_it(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    left = await bob.room_leave(room_id)
    assert isinstance(left, RoomLeaveResponse), left
    goodbye = await synced(bob)
    assert room_id in goodbye.rooms.leave
    seen = await synced(alice)
    (membership,) = [
        e for e in seen.rooms.join[room_id].timeline.events if isinstance(e, RoomMemberEvent)
    ]
    assert (membership.state_key, membership.membership) == (BOB, "leave")
    assert set(alice.rooms[room_id].users) == {ALICE}

    refused = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    assert isinstance(refused, RoomSendError)
    assert refused.status_code == "M_FORBIDDEN"


async def test_a_limited_sync_timeline_is_filled_in_from_prev_batch(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    sent = [await send_text(alice, room_id, f"line {n}") for n in range(7)]
    recent = await bob.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 2}}})
    assert isinstance(recent, SyncResponse), recent
    timeline = recent.rooms.join[room_id].timeline
    assert timeline.limited is True
    assert [event.event_id for event in timeline.events] == sent[-2:]

    older = await bob.room_messages(room_id, start=timeline.prev_batch, limit=5)
    assert isinstance(older, RoomMessagesResponse), older
    assert [event.event_id for event in older.chunk] == list(reversed(sent[:-2]))

    unread = await bob.room_messages(room_id, start=None, limit=1)
    assert isinstance(unread, RoomMessagesResponse), unread
    assert [event.event_id for event in unread.chunk] == [sent[-1]]


async def test_an_uninvited_user_can_neither_join_nor_read_the_private_room(
    server: Client, chat: Chat
) -> None:
    await send_text(chat.alice, chat.room_id, "just between us")
    eve = await logged_in(server.base_url, "eve", EVE)
    try:
        refused = await eve.join(chat.room_id)
        assert isinstance(refused, JoinError), refused
        assert refused.status_code == "M_FORBIDDEN"
        hidden = await eve.room_messages(chat.room_id, start=None)
        assert isinstance(hidden, RoomMessagesError), hidden
        assert hidden.status_code == "M_FORBIDDEN"
        nothing = await synced(eve)
        assert chat.room_id not in nothing.rooms.join
        assert chat.room_id not in nothing.rooms.invite
    finally:
        await eve.close()
