"""Relations through the real application: edits (m.replace), reactions (m.annotation),
threads (m.thread) and references, via /relations, bundled aggregations and /threads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.reads_helpers import create_room, get, ids, join, messages_ok, say, send, text
from tests.http.room_helpers import Client, Reply, User, q, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob", "carol")


async def relations(user: User, room_id: str, path: str, **query: Any) -> Reply:
    return await get(user, f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{path}", **query)


async def edit(user: User, room_id: str, original: str, body: str) -> str:
    content = {
        **text(f"* {body}"),
        "m.new_content": text(body),
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }
    return await send(user, room_id, content)


async def react(user: User, room_id: str, target: str, key: str) -> str:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}
    return await send(user, room_id, content, "m.reaction")


async def reply_in_thread(user: User, room_id: str, root: str, body: str) -> str:
    content = {**text(body), "m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    return await send(user, room_id, content)


@pytest.fixture
async def room(users: list[User]) -> str:
    alice, bob, carol = users
    room_id = await create_room(alice)
    await join(bob, room_id)
    await join(carol, room_id)
    return room_id


async def test_edits_are_listed_and_the_newest_is_bundled(users: list[User], room: str) -> None:
    alice, bob, _ = users
    original = await say(alice, room, "I like cake")
    first = await edit(alice, room, original, "I like chocolate cake")
    second = await edit(alice, room, original, "I love chocolate cake")
    # An "edit" by someone else is not a valid replacement and is not bundled.
    await edit(bob, room, original, "bob was here")
    listed = await relations(alice, room, f"{q(original)}/m.replace")
    assert listed.status == 200, listed.body
    assert ids(listed.body["chunk"])[1:] == [second, first]
    bundled = (await get(alice, f"/rooms/{q(room)}/event/{q(original)}")).body
    replace = bundled["unsigned"]["m.relations"]["m.replace"]
    assert replace["event_id"] == second
    assert replace["content"]["m.new_content"]["body"] == "I love chocolate cake"
    # The original content is left intact (C-S "Event replacements").
    assert bundled["content"]["body"] == "I like cake"
    page = await messages_ok(alice, room, dir="b", limit=10)
    in_timeline = next(e for e in page["chunk"] if e["event_id"] == original)
    assert in_timeline["unsigned"]["m.relations"]["m.replace"]["event_id"] == second


async def test_reactions_page_newest_first_with_event_type_filter(
    users: list[User], room: str
) -> None:
    alice, bob, carol = users
    target = await say(alice, room, "react to me")
    thumbs = await react(bob, room, target, "👍")
    heart = await react(carol, room, target, "❤️")
    await edit(alice, room, target, "edited")
    path = f"{q(target)}/m.annotation/m.reaction"
    first = await relations(alice, room, path, limit=1)
    assert first.status == 200, first.body
    assert ids(first.body["chunk"]) == [heart]
    assert "prev_batch" not in first.body
    second = await relations(alice, room, path, limit=1, **{"from": first.body["next_batch"]})
    assert ids(second.body["chunk"]) == [thumbs]
    assert second.body["prev_batch"] == first.body["next_batch"]
    # That was the oldest reaction: no more pages.
    assert "next_batch" not in second.body
    forwards = await relations(alice, room, path, dir="f")
    assert ids(forwards.body["chunk"]) == [thumbs, heart]
    everything = await relations(alice, room, q(target))
    assert len(everything.body["chunk"]) == 3
    # Annotations are not aggregated by the server.
    parent = (await get(alice, f"/rooms/{q(room)}/event/{q(target)}")).body
    assert "m.annotation" not in parent["unsigned"].get("m.relations", {})


async def test_threads_are_listed_bundled_and_summarised(users: list[User], room: str) -> None:
    alice, bob, carol = users
    root = await say(alice, room, "thread root")
    replies = [await reply_in_thread(bob, room, root, f"reply {i}") for i in range(3)]
    other_root = await say(carol, room, "quiet root")
    listed = await relations(alice, room, f"{q(root)}/m.thread")
    assert ids(listed.body["chunk"]) == list(reversed(replies))
    summary = (await get(carol, f"/rooms/{q(room)}/event/{q(root)}")).body["unsigned"][
        "m.relations"
    ]["m.thread"]
    assert summary["count"] == 3
    assert summary["latest_event"]["event_id"] == replies[-1]
    assert summary["current_user_participated"] is False
    mine = (await get(bob, f"/rooms/{q(room)}/event/{q(root)}")).body
    assert mine["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is True
    assert "m.relations" not in (await get(alice, f"/rooms/{q(room)}/event/{q(other_root)}")).body[
        "unsigned"
    ]

    threads = await get(alice, f"/_matrix/client/v1/rooms/{q(room)}/threads")
    assert threads.status == 200, threads.body
    assert ids(threads.body["chunk"]) == [root]
    assert threads.body["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 3
    second_root = await say(carol, room, "second root")
    await reply_in_thread(carol, room, second_root, "carol replies")
    both = await get(alice, f"/_matrix/client/v1/rooms/{q(room)}/threads", limit=1)
    assert ids(both.body["chunk"]) == [second_root]
    rest = await get(
        alice, f"/_matrix/client/v1/rooms/{q(room)}/threads", **{"from": both.body["next_batch"]}
    )
    assert ids(rest.body["chunk"]) == [root]
    assert "next_batch" not in rest.body
    participated = await get(
        carol, f"/_matrix/client/v1/rooms/{q(room)}/threads", include="participated"
    )
    assert ids(participated.body["chunk"]) == [second_root]


async def test_recurse_follows_relations_of_relations(users: list[User], room: str) -> None:
    alice, bob, _ = users
    root = await say(alice, room, "root")
    thread_reply = await reply_in_thread(bob, room, root, "in thread")
    reaction = await react(alice, room, thread_reply, "🎉")
    direct = await relations(alice, room, q(root))
    assert ids(direct.body["chunk"]) == [thread_reply]
    assert "recursion_depth" not in direct.body
    deep = await relations(alice, room, q(root), recurse="true")
    assert ids(deep.body["chunk"]) == [reaction, thread_reply]
    assert deep.body["recursion_depth"] == 3
    # Filters apply at every level: the reaction only relates through an m.thread event.
    filtered = await relations(alice, room, f"{q(root)}/m.annotation", recurse="true")
    assert filtered.body["chunk"] == []
    shallow = await relations(alice, room, q(root), recurse="false")
    assert shallow.body["recursion_depth"] == 1


async def test_references_are_bundled(users: list[User], room: str) -> None:
    alice, bob, _ = users
    target = await say(alice, room, "poll")
    content = {"m.relates_to": {"rel_type": "m.reference", "event_id": target}}
    answer = await send(bob, room, content, "org.example.vote")
    bundled = (await get(alice, f"/rooms/{q(room)}/event/{q(target)}")).body
    assert bundled["unsigned"]["m.relations"]["m.reference"] == {"chunk": [{"event_id": answer}]}


async def test_relation_errors(users: list[User], room: str) -> None:
    alice, _, _ = users
    target = await say(alice, room, "x")
    unknown = await relations(alice, room, q("$nope"))
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    for query in ({"from": "bogus"}, {"dir": "up"}, {"recurse": "yes"}, {"limit": "-2"}):
        reply = await relations(alice, room, q(target), **query)
        assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM"), query
    threads = await get(alice, f"/_matrix/client/v1/rooms/{q(room)}/threads", include="mine")
    assert (threads.status, threads.body["errcode"]) == (400, "M_INVALID_PARAM")
    zero = await get(alice, f"/_matrix/client/v1/rooms/{q(room)}/threads", limit=0)
    assert (zero.status, zero.body["errcode"]) == (400, "M_INVALID_PARAM")
