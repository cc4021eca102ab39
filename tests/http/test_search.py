"""POST /search (room_events) against the real app and PostgreSQL full-text search, with
responses checked against search.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, Reply, User, q, register_users
from tests.openapi_schema import client_server_spec


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def say(user: User, room_id: str, body: str) -> str:
    sent = await user.send(room_id, {"msgtype": "m.text", "body": body}, f"t-{body}")
    assert sent.status == 200, sent.body
    event_id: str = sent.body["event_id"]
    return event_id


async def search(user: User, next_batch: str | None = None, **criteria: Any) -> Reply:
    query = {"next_batch": next_batch} if next_batch is not None else None
    body = {"search_categories": {"room_events": criteria}}
    reply = await user.call("POST", "/search", body, query=query)
    if reply.status == 200:
        assert client_server_spec().mismatches("/search", "post", 200, reply.body) == []
    return reply


def found(reply: Reply) -> list[str]:
    results = reply.body["search_categories"]["room_events"]["results"]
    return [result["result"]["event_id"] for result in results]


async def test_finds_messages_by_word_and_prefix_with_rank_and_count(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    martians = await say(alice, room_id, "The martians have landed")
    await say(bob, room_id, "Nothing to see here")
    both = await say(bob, room_id, "martians and men, martians everywhere")
    reply = await search(bob, search_term="martians")
    assert reply.status == 200, reply.body
    category = reply.body["search_categories"]["room_events"]
    assert set(found(reply)) == {martians, both}
    assert category["count"] == 2
    assert "martians" in category["highlights"]
    assert all(isinstance(result["rank"], float) for result in category["results"])
    # Most relevant first: two mentions beat one.
    assert found(reply)[0] == both
    assert "next_batch" not in category
    prefix = await search(bob, search_term="mart")
    assert set(found(prefix)) == {martians, both}
    nothing = await search(bob, search_term="venusians")
    assert found(nothing) == [] and nothing.body["search_categories"]["room_events"]["count"] == 0


async def test_recent_order_paginates_with_next_batch(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await alice.create_room()
    sent = [await say(alice, room_id, f"ping number {n}") for n in range(5)]
    seen: list[str] = []
    token = None
    for _ in range(5):
        reply = await search(
            alice, token, search_term="ping", order_by="recent", filter={"limit": 2}
        )
        assert reply.status == 200, reply.body
        seen += found(reply)
        token = reply.body["search_categories"]["room_events"].get("next_batch")
        if token is None:
            break
    assert seen == list(reversed(sent))
    ranked: list[str] = []
    token = None
    for _ in range(5):
        reply = await search(alice, token, search_term="ping", filter={"limit": 2})
        ranked += found(reply)
        token = reply.body["search_categories"]["room_events"].get("next_batch")
        if token is None:
            break
    assert sorted(ranked) == sorted(sent)


async def test_only_events_the_user_may_see_are_searched(users: list[User]) -> None:
    alice, bob, carol = users
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
    before = await say(alice, private, "secret plans before bob")
    assert (await bob.join(private)).status == 200
    during = await say(alice, private, "secret plans with bob")
    assert (await bob.leave(private)).status == 200
    after = await say(alice, private, "secret plans after bob")
    elsewhere = await alice.create_room()
    await say(alice, elsewhere, "secret plans elsewhere")
    bob_sees = await search(bob, search_term="secret plans")
    assert found(bob_sees) == [during]
    assert found(await search(carol, search_term="secret")) == []
    assert set(found(await search(alice, search_term="secret"))) >= {before, during, after}


async def test_keys_filter_and_redactions(users: list[User]) -> None:
    alice, _, _ = users
    room_id = await alice.create_room(name="Lunar colony", topic="moon base chatter")
    message = await say(alice, room_id, "colony supplies arrive tomorrow")
    names = await search(alice, search_term="colony", keys=["content.name"])
    assert len(found(names)) == 1
    assert names.body["search_categories"]["room_events"]["results"][0]["result"]["type"] == (
        "m.room.name"
    )
    topics = await search(alice, search_term="moon", keys=["content.topic"])
    assert len(found(topics)) == 1
    bodies = await search(alice, search_term="colony", keys=["content.body"])
    assert found(bodies) == [message]
    other_room = await alice.create_room()
    await say(alice, other_room, "colony elsewhere")
    only_first = await search(
        alice, search_term="colony", keys=["content.body"], filter={"rooms": [room_id]}
    )
    assert found(only_first) == [message]
    redacted = await alice.call(
        "PUT", f"/rooms/{q(room_id)}/redact/{q(message)}/r1", {"reason": "oops"}
    )
    assert redacted.status == 200, redacted.body
    after = await search(alice, search_term="supplies")
    assert found(after) == []


async def test_context_profiles_state_and_groups(users: list[User]) -> None:
    alice, bob, _ = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    name = await bob.call("PUT", f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob"})
    assert name.status == 200
    first = await say(alice, room_id, "one")
    hit = await say(bob, room_id, "needle in the haystack")
    last = await say(alice, room_id, "three")
    reply = await search(
        alice,
        search_term="needle",
        event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
        include_state=True,
        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
    )
    assert reply.status == 200, reply.body
    category = reply.body["search_categories"]["room_events"]
    (result,) = category["results"]
    context = result["context"]
    assert [e["event_id"] for e in context["events_before"]] == [first]
    assert [e["event_id"] for e in context["events_after"]] == [last]
    assert context["profile_info"][bob.user_id]["displayname"] == "Bob"
    assert "start" in context and "end" in context
    state_types = {event["type"] for event in category["state"][room_id]}
    assert {"m.room.create", "m.room.member"} <= state_types
    assert category["groups"]["room_id"][room_id]["results"] == [hit]
    assert category["groups"]["sender"][bob.user_id] == {"results": [hit], "order": 1}


async def test_bad_requests_get_clear_errors(users: list[User]) -> None:
    alice, _, _ = users
    no_categories = await alice.call("POST", "/search", {})
    assert (no_categories.status, no_categories.body["errcode"]) == (400, "M_MISSING_PARAM")
    no_term = await search(alice)
    assert (no_term.status, no_term.body["errcode"]) == (400, "M_MISSING_PARAM")
    assert (await search(alice, search_term=7)).status == 400
    bad_order = await search(alice, search_term="x", order_by="oldest")
    assert (bad_order.status, bad_order.body["errcode"]) == (400, "M_INVALID_PARAM")
    bad_key = await search(alice, search_term="x", keys=["content.url"])
    assert bad_key.status == 400
    bad_group = await search(alice, search_term="x", groupings={"group_by": [{"key": "type"}]})
    assert bad_group.status == 400
    bad_token = await search(alice, "nonsense", search_term="x")
    assert (bad_token.status, bad_token.body["errcode"]) == (400, "M_INVALID_PARAM")
    bad_filter = await search(alice, search_term="x", filter={"limit": "many"})
    assert bad_filter.status == 400
    # Only punctuation: nothing to look for, an empty answer rather than an SQL error.
    empty = await search(alice, search_term="&|!():*")
    assert empty.status == 200 and found(empty) == []
    huge = await search(alice, search_term="ü" * 5000 + " " + "x" * 5000)
    assert huge.status == 200 and found(huge) == []
    other = await alice.call("POST", "/search", {"search_categories": {}})
    assert other.status == 200 and other.body == {"search_categories": {}}


async def test_ignored_users_messages_are_not_found(users: list[User]) -> None:
    alice, bob, carol = users
    room_id = await alice.create_room(preset="public_chat")
    for user in (bob, carol):
        assert (await user.join(room_id)).status == 200
    await say(bob, room_id, "gossip from bob")
    from_carol = await say(carol, room_id, "gossip from carol")
    ignored = {"ignored_users": {bob.user_id: {}}}
    path = f"/user/{q(alice.user_id)}/account_data/m.ignored_user_list"
    assert (await alice.call("PUT", path, ignored)).status == 200
    assert found(await search(alice, search_term="gossip")) == [from_carol]
