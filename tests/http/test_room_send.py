"""Sending events through the real application: message events with durable transaction IDs,
state events, redactions, and the errors for bad requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users, state_event

MESSAGE = {"msgtype": "m.text", "body": "hello"}


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def count_events(pool: asyncpg.Pool, room_id: str, event_type: str) -> int:
    value = await pool.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = $2", room_id, event_type
    )
    return int(value)


async def redacted_because(pool: asyncpg.Pool, event_id: str) -> str | None:
    value: str | None = await pool.fetchval(
        "SELECT redacted_because FROM events WHERE event_id = $1", event_id
    )
    return value


async def test_retried_txn_id_returns_the_same_event(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    first = await alice.send(room_id, MESSAGE, "txn1")
    assert first.status == 200
    assert first.body["event_id"].startswith("$")
    retry = await alice.send(room_id, MESSAGE, "txn1")
    assert retry.body == first.body
    assert await count_events(pool, room_id, "m.room.message") == 1
    other = await alice.send(room_id, MESSAGE, "txn2")
    assert other.body["event_id"] != first.body["event_id"]
    # The same txnId on another endpoint (another event type) is another request.
    elsewhere = await alice.send(room_id, {"x": 1}, "txn1", event_type="org.example.ping")
    assert elsewhere.body["event_id"] != first.body["event_id"]


async def test_txn_ids_are_scoped_per_device(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    login = await client.login("alice")
    second_device = User(client, alice.user_id, login.body["access_token"])
    first = await alice.send(room_id, MESSAGE, "same")
    second = await second_device.send(room_id, MESSAGE, "same")
    assert first.body["event_id"] != second.body["event_id"]
    assert await count_events(pool, room_id, "m.room.message") == 2


async def test_txn_id_survives_a_restart(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        (alice,) = await register_users(client, "alice")
        room_id = await alice.create_room()
        first = await alice.send(room_id, MESSAGE, "durable")
        redaction = await alice.call(
            "PUT", f"/rooms/{q(room_id)}/redact/{q(first.body['event_id'])}/r1", {}
        )
    async with running_server(tmp_path, migrated_db_dsn, pool) as restarted:
        alice = User(restarted, alice.user_id, alice.token)
        again = await alice.send(room_id, MESSAGE, "durable")
        assert again.status == 200 and again.body == first.body
        redact_again = await alice.call(
            "PUT", f"/rooms/{q(room_id)}/redact/{q(first.body['event_id'])}/r1", {}
        )
        assert redact_again.body == redaction.body
    assert await count_events(pool, room_id, "m.room.message") == 1
    assert await count_events(pool, room_id, "m.room.redaction") == 1


async def test_sending_needs_membership(client: Client, users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    outsider = await bob.send(room_id, MESSAGE, "t")
    assert outsider.status == 403 and outsider.body["errcode"] == "M_FORBIDDEN"
    unknown = await bob.send("!missing:accounts.test", MESSAGE, "t")
    assert unknown.status == 404 and unknown.body["errcode"] == "M_NOT_FOUND"
    await bob.join(room_id)
    assert (await bob.send(room_id, MESSAGE, "t")).status == 200


async def test_state_put_with_and_without_state_key(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    base = f"/rooms/{q(room_id)}/state/m.room.topic"
    no_slash = await alice.call("PUT", base, {"topic": "one"})
    assert no_slash.status == 200, no_slash.body
    topic = await state_event(client.deps, room_id, "m.room.topic")
    assert topic.event_id == no_slash.body["event_id"] and topic.content["topic"] == "one"
    trailing = await alice.call("PUT", base + "/", {"topic": "two"})
    assert trailing.status == 200
    assert (await state_event(client.deps, room_id, "m.room.topic")).content["topic"] == "two"
    keyed = await alice.put_state(room_id, "org.example.pet", {"animal": "cat"}, "a/b:c")
    assert keyed.status == 200
    pet = await state_event(client.deps, room_id, "org.example.pet", "a/b:c")
    assert dict(pet.content) == {"animal": "cat"}


async def test_setting_state_to_what_it_is_returns_the_current_event(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    first = await alice.put_state(room_id, "m.room.name", {"name": "same"})
    again = await alice.put_state(room_id, "m.room.name", {"name": "same"})
    assert again.body == first.body
    assert await count_events(pool, room_id, "m.room.name") == 1


async def test_state_needs_power(client: Client, users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    reply = await bob.put_state(room_id, "m.room.name", {"name": "mine now"})
    assert reply.status == 403 and reply.body["errcode"] == "M_FORBIDDEN"
    assert await state_event(client.deps, room_id, "m.room.name") is None


async def test_canonical_alias_must_point_at_the_room(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room(room_alias_name="here")
    await alice.create_room(room_alias_name="there")
    wrong = await alice.put_state(
        room_id, "m.room.canonical_alias", {"alias": "#there:accounts.test"}
    )
    assert wrong.status == 400 and wrong.body["errcode"] == "M_BAD_ALIAS"
    missing = await alice.put_state(
        room_id,
        "m.room.canonical_alias",
        {"alias": "#here:accounts.test", "alt_aliases": ["#nope:accounts.test"]},
    )
    assert missing.body["errcode"] == "M_BAD_ALIAS"
    invalid = await alice.put_state(
        room_id, "m.room.canonical_alias", {"alt_aliases": ["no-sigil"]}
    )
    assert invalid.status == 400 and invalid.body["errcode"] == "M_INVALID_PARAM"
    await alice.call("PUT", f"/directory/room/{q('#also:accounts.test')}", {"room_id": room_id})
    ok = await alice.put_state(
        room_id,
        "m.room.canonical_alias",
        {"alias": "#here:accounts.test", "alt_aliases": ["#also:accounts.test"]},
    )
    assert ok.status == 200, ok.body


async def test_redact_own_event_and_others_only_with_power(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    alices = (await alice.send(room_id, MESSAGE, "a1")).body["event_id"]
    bobs = (await bob.send(room_id, MESSAGE, "b1")).body["event_id"]
    denied = await bob.call("PUT", f"/rooms/{q(room_id)}/redact/{q(alices)}/x", {})
    assert denied.status == 403 and denied.body["errcode"] == "M_FORBIDDEN"
    own = await bob.call("PUT", f"/rooms/{q(room_id)}/redact/{q(bobs)}/x", {"reason": "typo"})
    assert own.status == 200
    assert await redacted_because(pool, bobs) == own.body["event_id"]
    moderator = await alice.call("PUT", f"/rooms/{q(room_id)}/redact/{q(bobs)}/y", {})
    assert moderator.status == 200
    assert await redacted_because(pool, alices) is None


async def test_redaction_sent_as_an_event_in_v11_and_v1(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, _ = users
    for version in ("11", "1"):
        room_id = await alice.create_room(room_version=version)
        target = (await alice.send(room_id, MESSAGE, f"m{version}")).body["event_id"]
        reply = await alice.send(room_id, {"redacts": target}, f"r{version}", "m.room.redaction")
        assert reply.status == 200, reply.body
        assert await redacted_because(pool, target) == reply.body["event_id"]
        events = await client.deps.engine.state.get_events([reply.body["event_id"]])
        pdu = events[reply.body["event_id"]].pdu
        if version == "1":
            assert pdu["redacts"] == target and "redacts" not in pdu["content"]
        else:
            assert pdu["content"]["redacts"] == target and "redacts" not in pdu


async def test_legacy_post_send_and_redact_without_txn_id(
    client: Client, users: list[User], pool: asyncpg.Pool
) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    path = f"/rooms/{q(room_id)}/send/m.room.message"
    first = await alice.call("POST", path, MESSAGE)
    second = await alice.call("POST", path, MESSAGE)
    assert first.status == 200 and second.status == 200, (first.body, second.body)
    # No transaction ID: every POST is a new event.
    assert first.body["event_id"] != second.body["event_id"]
    assert await count_events(pool, room_id, "m.room.message") == 2
    target = first.body["event_id"]
    redaction = await alice.call("POST", f"/rooms/{q(room_id)}/redact/{q(target)}", {})
    assert redaction.status == 200, redaction.body
    assert await redacted_because(pool, target) == redaction.body["event_id"]
    r0 = await alice.call(
        "POST", f"/_matrix/client/r0/rooms/{q(room_id)}/send/m.room.message", MESSAGE
    )
    assert r0.status == 200, r0.body
    assert await count_events(pool, room_id, "m.room.message") == 3


async def test_bad_send_requests(client: Client, users: list[User]) -> None:
    alice, _ = users
    room_id = await alice.create_room()
    path = f"/rooms/{q(room_id)}/send/m.room.message/t"
    assert (await alice.call("PUT", path, raw=b"nope")).body["errcode"] == "M_NOT_JSON"
    assert (await alice.call("PUT", path, [1, 2])).body["errcode"] == "M_NOT_JSON"
    too_long_type = await alice.send(room_id, MESSAGE, "t", event_type="x" * 256)
    assert too_long_type.status == 400 and too_long_type.body["errcode"] == "M_INVALID_PARAM"
    huge = await alice.send(room_id, {"body": "x" * 70_000}, "big")
    assert huge.status == 413 and huge.body["errcode"] == "M_TOO_LARGE"
    no_redacts = await alice.send(room_id, {}, "r", event_type="m.room.redaction")
    assert no_redacts.status == 400 and no_redacts.body["errcode"] == "M_BAD_JSON"
    bad_room = await alice.send("not-a-room", MESSAGE, "t")
    assert bad_room.status == 400 and bad_room.body["errcode"] == "M_INVALID_PARAM"
    bad_event = await alice.call("PUT", f"/rooms/{q(room_id)}/redact/nope/t", {})
    assert bad_event.status == 400 and bad_event.body["errcode"] == "M_INVALID_PARAM"
    no_token = await client.call("PUT", path, MESSAGE)
    assert no_token.status == 401
