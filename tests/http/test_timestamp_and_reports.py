"""GET /v1/rooms/{roomId}/timestamp_to_event and the content reports (POST
/rooms/{roomId}/report[/{eventId}], POST /users/{userId}/report), against the real app and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from homeserver.storage.reports import list_reports
from tests.http.account_helpers import SERVER_NAME, running_server
from tests.http.room_helpers import Client, User, q, register_users

V1 = "/_matrix/client/v1"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def say(user: User, room_id: str, body: str) -> dict[str, Any]:
    """Send a message; the stored event (for its origin_server_ts)."""
    sent = await user.send(room_id, {"msgtype": "m.text", "body": body}, f"t-{body}")
    assert sent.status == 200, sent.body
    event = await user.call("GET", f"/rooms/{q(room_id)}/event/{q(sent.body['event_id'])}")
    assert event.status == 200
    result: dict[str, Any] = event.body
    return result


async def closest(user: User, room_id: str, **query: str) -> Any:
    path = f"{V1}/rooms/{q(room_id)}/timestamp_to_event"
    return await user.call("GET", path, query=query)


# --- timestamp_to_event ----------------------------------------------------------------------


async def test_timestamp_to_event_finds_the_closest_event_either_way(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    first = await say(alice, room_id, "first")
    last = await say(alice, room_id, "last")

    after_everything = await closest(alice, room_id, ts=str(last["origin_server_ts"] + 1), dir="b")
    assert after_everything.status == 200, after_everything.body
    assert after_everything.body == {
        "event_id": last["event_id"],
        "origin_server_ts": last["origin_server_ts"],
    }
    forward = await closest(alice, room_id, ts=str(first["origin_server_ts"]), dir="f")
    assert forward.body["origin_server_ts"] >= first["origin_server_ts"]
    assert forward.body["origin_server_ts"] <= last["origin_server_ts"]
    backward = await closest(alice, room_id, ts=str(first["origin_server_ts"]), dir="b")
    assert backward.body["origin_server_ts"] <= first["origin_server_ts"]
    # From the dawn of time forwards: the room's first event, its creation.
    creation = await closest(alice, room_id, ts="0", dir="f")
    create_event = await alice.call(
        "GET", f"/rooms/{q(room_id)}/state/m.room.create/", query={"format": "event"}
    )
    assert creation.body["event_id"] == create_event.body["event_id"]


async def test_timestamp_to_event_without_an_event_there_is_not_found(users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    last = await say(alice, room_id, "only")
    reply = await closest(alice, room_id, ts=str(last["origin_server_ts"] + 60_000), dir="f")
    assert (reply.status, reply.body["errcode"]) == (404, "M_NOT_FOUND")
    before = await closest(alice, room_id, ts="0", dir="b")
    assert (before.status, before.body["errcode"]) == (404, "M_NOT_FOUND")


async def test_timestamp_to_event_skips_events_the_user_may_not_see(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    hidden = await say(alice, room_id, "before bob")
    joined = await bob.join(room_id)
    assert joined.status == 200
    # History visibility "shared" lets bob see the earlier message; "joined" would not.
    reply = await closest(bob, room_id, ts=str(hidden["origin_server_ts"]), dir="b")
    assert reply.status == 200
    private = await alice.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }
        ],
    )
    secret = await say(alice, private, "secret")
    assert (await bob.join(private)).status == 200
    before_join = await closest(bob, private, ts=str(secret["origin_server_ts"]), dir="b")
    # Not the message sent before bob joined: the closest event he may see, the visibility
    # change itself (the room was "shared" before it, and he joined later).
    visibility = await bob.call(
        "GET", f"/rooms/{q(private)}/state/m.room.history_visibility/", query={"format": "event"}
    )
    assert before_join.status == 200
    assert before_join.body["event_id"] == visibility.body["event_id"] != secret["event_id"]


async def test_timestamp_to_event_errors(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room()
    outsider = await closest(bob, room_id, ts="0", dir="f")
    assert (outsider.status, outsider.body["errcode"]) == (403, "M_FORBIDDEN")
    for query, expected in (
        ({"dir": "f"}, "M_MISSING_PARAM"),
        ({"ts": "0"}, "M_MISSING_PARAM"),
        ({"ts": "yesterday", "dir": "f"}, "M_INVALID_PARAM"),
        ({"ts": "-5", "dir": "f"}, "M_INVALID_PARAM"),
        ({"ts": "0", "dir": "sideways"}, "M_INVALID_PARAM"),
    ):
        reply = await closest(alice, room_id, **query)
        assert (reply.status, reply.body["errcode"]) == (400, expected), query


# --- reports ---------------------------------------------------------------------------------


async def test_a_member_reports_an_event(users: list[User], pool: asyncpg.Pool) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    event = await say(alice, room_id, "rude")
    path = f"/rooms/{q(room_id)}/report/{q(event['event_id'])}"
    reply = await bob.call("POST", path, {"reason": "rude words", "score": -100})
    assert (reply.status, reply.body) == (200, {})
    (report,) = await list_reports(pool)
    assert (report.kind, report.reporter, report.room_id, report.event_id, report.reason) == (
        "event",
        bob.user_id,
        room_id,
        event["event_id"],
        "rude words",
    )


async def test_event_reports_need_membership_and_a_visible_event(
    users: list[User], pool: asyncpg.Pool
) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    event = await say(alice, room_id, "hello")
    path = f"/rooms/{q(room_id)}/report/{q(event['event_id'])}"
    outsider = await bob.call("POST", path, {"reason": "x"})
    assert (outsider.status, outsider.body["errcode"]) == (404, "M_NOT_FOUND")
    unknown = await alice.call("POST", f"/rooms/{q(room_id)}/report/{q('$nope')}", {})
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    wrong_type = await alice.call("POST", path, {"reason": 5})
    assert (wrong_type.status, wrong_type.body["errcode"]) == (400, "M_BAD_JSON")
    assert await list_reports(pool) == []


async def test_anyone_reports_a_known_room(users: list[User], pool: asyncpg.Pool) -> None:
    alice, bob = users
    room_id = await alice.create_room()
    reply = await bob.call("POST", f"/rooms/{q(room_id)}/report", {"reason": ""})
    assert (reply.status, reply.body) == (200, {})
    (report,) = await list_reports(pool)
    assert (report.kind, report.room_id, report.event_id, report.reason) == (
        "room",
        room_id,
        None,
        "",
    )
    unknown = await bob.call(
        "POST", f"/rooms/{q('!nowhere:' + SERVER_NAME)}/report", {"reason": "x"}
    )
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    no_reason = await bob.call("POST", f"/rooms/{q(room_id)}/report", {})
    assert (no_reason.status, no_reason.body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_user_reports(users: list[User], pool: asyncpg.Pool) -> None:
    alice, bob = users
    reply = await alice.call("POST", f"/users/{q(bob.user_id)}/report", {"reason": "spam"})
    assert (reply.status, reply.body) == (200, {})
    remote = await alice.call("POST", f"/users/{q('@eve:elsewhere.test')}/report", {"reason": "x"})
    assert remote.status == 200
    reported = {(r.kind, r.reported_user, r.room_id) for r in await list_reports(pool)}
    assert reported == {("user", bob.user_id, None), ("user", "@eve:elsewhere.test", None)}
    unknown = await alice.call(
        "POST", f"/users/{q('@ghost:' + SERVER_NAME)}/report", {"reason": "x"}
    )
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    invalid = await alice.call("POST", f"/users/{q('not-a-user')}/report", {"reason": "x"})
    assert (invalid.status, invalid.body["errcode"]) == (400, "M_INVALID_PARAM")
