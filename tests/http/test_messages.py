"""GET /rooms/{roomId}/messages through the real application: both directions, tokens, `to`,
filters, lazy-loaded members, unsigned fields, and the errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import (
    bodies,
    create_room,
    ids,
    join,
    messages,
    messages_ok,
    say,
    send,
)
from tests.http.room_helpers import Client, User, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def page_all(user: User, room_id: str, **query: Any) -> tuple[list[list[str]], str | None]:
    """Follow `end` tokens from `query` until none is given: the event IDs of each page."""
    pages: list[list[str]] = []
    while True:
        page = await messages_ok(user, room_id, **query)
        pages.append(ids(page["chunk"]))
        if "end" not in page:
            return pages, None
        query["from"] = page["end"]
        assert len(pages) < 50, "pagination does not terminate"


async def test_fifty_messages_page_backwards_and_forwards_in_exact_order(
    users: list[User],
) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    sent = [await say(alice, room_id, f"m{i}") for i in range(50)]

    newest = await messages_ok(alice, room_id, dir="b", limit=10)
    assert bodies(newest["chunk"]) == [f"m{i}" for i in range(49, 39, -1)]
    assert ids(newest["chunk"]) == list(reversed(sent[40:]))

    pages, _ = await page_all(alice, room_id, dir="b", limit=10)
    backwards = [event_id for page in pages for event_id in page]
    assert all(len(page) == 10 for page in pages[:5])
    assert backwards[:50] == list(reversed(sent))
    # Then the room's creation events, down to m.room.create; no `end` at the start.
    assert len(backwards) == len(set(backwards))
    first_page = await messages_ok(alice, room_id, dir="b", limit=1000)
    assert ids(first_page["chunk"]) == backwards
    assert "end" not in first_page
    assert first_page["chunk"][-1]["type"] == "m.room.create"

    forward_pages, _ = await page_all(alice, room_id, dir="f", limit=10)
    forwards = [event_id for page in forward_pages for event_id in page]
    assert forwards == list(reversed(backwards))


async def test_end_token_of_a_backward_page_resumes_in_both_directions(
    users: list[User],
) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    sent = [await say(alice, room_id, f"m{i}") for i in range(30)]
    first = await messages_ok(alice, room_id, dir="b", limit=10)
    second = await messages_ok(alice, room_id, dir="b", limit=10, **{"from": first["end"]})
    assert second["start"] == first["end"]
    assert ids(second["chunk"]) == list(reversed(sent[10:20]))
    # Forwards from the same token: exactly the events of the first page, oldest first.
    again = await messages_ok(alice, room_id, dir="f", limit=10, **{"from": first["end"]})
    assert ids(again["chunk"]) == sent[20:30]
    # That reached the newest event: no further events, so no `end`.
    assert "end" not in again
    partial = await messages_ok(alice, room_id, dir="f", limit=4, **{"from": first["end"]})
    rest = await messages_ok(alice, room_id, dir="f", limit=10, **{"from": partial["end"]})
    assert ids(partial["chunk"]) + ids(rest["chunk"]) == sent[20:30]


async def test_to_token_stops_pagination(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    sent = [await say(alice, room_id, f"m{i}") for i in range(25)]
    first = await messages_ok(alice, room_id, dir="b", limit=5)
    second = await messages_ok(alice, room_id, dir="b", limit=5, **{"from": first["end"]})
    # Backwards from the newest event down to the gap after page 2: pages 1 and 2 exactly.
    bounded = await messages_ok(alice, room_id, dir="b", limit=100, to=second["end"])
    assert ids(bounded["chunk"]) == list(reversed(sent[15:]))
    assert "end" not in bounded
    # Forwards between the same two tokens: page 2's events, oldest first.
    between = await messages_ok(
        alice, room_id, dir="f", limit=100, to=first["end"], **{"from": second["end"]}
    )
    assert ids(between["chunk"]) == sent[15:20]


async def test_sync_style_stream_token_is_accepted(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    sent = [await say(alice, room_id, f"m{i}") for i in range(3)]
    page = await messages_ok(alice, room_id, dir="b", limit=2, **{"from": "s999999_0_0_0_0_0"})
    assert ids(page["chunk"]) == [sent[2], sent[1]]
    assert page["start"] == "s999999_0_0_0_0_0"
    old = await messages_ok(alice, room_id, dir="b", limit=5, **{"from": "s0"})
    assert old["chunk"] == []
    assert "end" not in old


async def test_filters_by_types_senders_and_not_types(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    await say(alice, room_id, "from alice")
    await say(bob, room_id, "from bob")
    await send(bob, room_id, {"x": 1}, "org.example.custom")

    def with_filter(**event_filter: Any) -> dict[str, Any]:
        return {"dir": "b", "limit": 50, "filter": json.dumps(event_filter)}

    only_messages = await messages_ok(alice, room_id, **with_filter(types=["m.room.message"]))
    assert bodies(only_messages["chunk"]) == ["from bob", "from alice"]
    assert {e["type"] for e in only_messages["chunk"]} == {"m.room.message"}
    only_bob = await messages_ok(alice, room_id, **with_filter(senders=[bob.user_id]))
    assert {e["sender"] for e in only_bob["chunk"]} == {bob.user_id}
    assert [e["type"] for e in only_bob["chunk"]] == [
        "org.example.custom",
        "m.room.message",
        "m.room.member",
    ]
    wildcard = await messages_ok(alice, room_id, **with_filter(types=["org.example.*"]))
    assert [e["type"] for e in wildcard["chunk"]] == ["org.example.custom"]
    no_state = await messages_ok(
        alice, room_id, **with_filter(not_types=["m.room.*"], senders=[alice.user_id, bob.user_id])
    )
    assert [e["type"] for e in no_state["chunk"]] == ["org.example.custom"]


async def test_filter_limit_applies_when_no_limit_parameter(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    for i in range(5):
        await say(alice, room_id, f"m{i}")
    page = await messages_ok(alice, room_id, dir="b", filter=json.dumps({"limit": 2}))
    assert bodies(page["chunk"]) == ["m4", "m3"]
    assert "end" in page


async def test_lazy_load_members_returns_the_senders_member_events(users: list[User]) -> None:
    alice, bob, carol = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    await join(carol, room_id)
    await say(carol, room_id, "early")
    for i in range(3):
        await say(bob, room_id, f"bob {i}")
    lazy = json.dumps({"lazy_load_members": True, "types": ["m.room.message"]})
    page = await messages_ok(alice, room_id, dir="b", limit=3, filter=lazy)
    assert {e["sender"] for e in page["chunk"]} == {bob.user_id}
    assert [(e["type"], e["state_key"]) for e in page["state"]] == [("m.room.member", bob.user_id)]
    assert page["state"][0]["content"]["membership"] == "join"
    plain = await messages_ok(alice, room_id, dir="b", limit=3)
    assert "state" not in plain


async def test_unsigned_carries_age_membership_and_own_transaction_id(
    users: list[User],
) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    reply = await alice.send(room_id, {"msgtype": "m.text", "body": "hi"}, "my-txn-1")
    event_id = reply.body["event_id"]
    mine = (await messages_ok(alice, room_id, dir="b", limit=1))["chunk"][0]
    assert mine["event_id"] == event_id
    assert mine["room_id"] == room_id
    assert mine["sender"] == alice.user_id
    assert mine["unsigned"]["transaction_id"] == "my-txn-1"
    assert mine["unsigned"]["age"] >= 0
    assert mine["unsigned"]["membership"] == "join"
    theirs = (await messages_ok(bob, room_id, dir="b", limit=1))["chunk"][0]
    assert theirs["event_id"] == event_id
    assert "transaction_id" not in theirs["unsigned"]


async def test_redacted_events_are_served_redacted_with_the_redaction(
    users: list[User],
) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    target = await say(alice, room_id, "regret")
    reply = await alice.call(
        "PUT", f"/rooms/{q(room_id)}/redact/{q(target)}/r1", {"reason": "oops"}
    )
    assert reply.status == 200, reply.body
    page = await messages_ok(alice, room_id, dir="b", limit=2)
    redaction, redacted = page["chunk"]
    assert redaction["type"] == "m.room.redaction"
    assert redacted["event_id"] == target
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == reply.body["event_id"]
    assert redacted["unsigned"]["redacted_because"]["content"]["reason"] == "oops"


async def test_outsider_and_unknown_room_get_forbidden(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await create_room(alice)
    await say(alice, room_id, "secret")
    outsider = await messages(bob, room_id, dir="b")
    assert outsider.status == 403
    assert outsider.body["errcode"] == "M_FORBIDDEN"
    unknown = await messages(bob, "!nowhere:accounts.test", dir="b")
    assert (unknown.status, unknown.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    ("query", "errcode"),
    [
        ({"dir": "b", "from": "garbage"}, "M_INVALID_PARAM"),
        ({"dir": "b", "from": "t1-"}, "M_INVALID_PARAM"),
        ({"dir": "b", "to": "s-1"}, "M_INVALID_PARAM"),
        ({"dir": "sideways"}, "M_INVALID_PARAM"),
        ({}, "M_MISSING_PARAM"),
        ({"dir": "b", "limit": "-1"}, "M_INVALID_PARAM"),
        ({"dir": "b", "limit": "ten"}, "M_INVALID_PARAM"),
        ({"dir": "b", "filter": "{not json"}, "M_NOT_JSON"),
        ({"dir": "b", "filter": '{"limit": 0}'}, "M_INVALID_PARAM"),
        ({"dir": "b", "filter": '{"types": "m.room.message"}'}, "M_BAD_JSON"),
    ],
)
async def test_bad_parameters_are_rejected(
    users: list[User], query: dict[str, str], errcode: str
) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    reply = await messages(alice, room_id, **query)
    assert reply.status == 400, reply.body
    assert reply.body["errcode"] == errcode


async def test_missing_token_is_unauthorized(client: Client, users: list[User]) -> None:
    alice, _, _ = users
    room_id = await create_room(alice)
    reply = await client.call("GET", f"/rooms/{q(room_id)}/messages", query={"dir": "b"})
    assert (reply.status, reply.body["errcode"]) == (401, "M_MISSING_TOKEN")
