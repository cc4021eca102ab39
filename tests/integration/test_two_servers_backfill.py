"""/messages across servers (issue 5): a user who joins a room of another server pages back
through the history from before their join, which their server backfills from the room's
server (S2S "Backfilling and retrieving missing events"), and /sync never shows it as new.
"""

from __future__ import annotations

from typing import Any

from tests.integration.rooms import create_public_room
from tests.integration.test_two_servers import Servers, User, q, send_text

# Members who join later can read what came before (C-S "History visibility").
SHARED_HISTORY: dict[str, Any] = {
    "type": "m.room.history_visibility",
    "state_key": "",
    "content": {"history_visibility": "shared"},
}


async def page_back(user: User, room_id: str, token: str) -> tuple[list[dict[str, Any]], Any]:
    status, page = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=10&from={q(token)}"
    )
    assert status == 200, page
    return page["chunk"], page.get("end")


async def test_a_joining_user_pages_back_through_history_backfilled_from_the_room_server(
    servers: Servers,
) -> None:
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    room_id = await create_public_room(alice, initial_state=[SHARED_HISTORY])
    for n in range(1, 31):
        await send_text(alice, room_id, f"t{n}", f"message {n}")
    status, joined = await bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(servers.a.name)}", {}
    )
    assert status == 200, joined

    status, sync = await bob.call("GET", "/_matrix/client/v3/sync?timeout=0")
    assert status == 200, sync
    timeline = sync["rooms"]["join"][room_id]["timeline"]
    assert [e["type"] for e in timeline["events"]] == ["m.room.member"]  # just bob's join
    next_batch = sync["next_batch"]

    bodies: list[str] = []
    token: Any = timeline["prev_batch"]
    pages = 0
    while token is not None:
        pages += 1
        assert pages <= 10, "pagination should end"
        chunk, token = await page_back(bob, room_id, token)
        bodies += [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]

    # Newest first, every one of A's messages exactly once.
    assert bodies == [f"message {n}" for n in range(30, 0, -1)]
    rows = await servers.b.deps.pool.fetch(
        "SELECT stream_ordering FROM events WHERE room_id = $1"
        " AND type = 'm.room.message' AND NOT outlier",
        room_id,
    )
    assert len(rows) == 30 and all(r["stream_ordering"] < 0 for r in rows)

    # None of it is new to /sync: nothing since the token from before the pagination.
    status, later = await bob.call(
        "GET", f"/_matrix/client/v3/sync?timeout=0&since={q(next_batch)}"
    )
    assert status == 200, later
    room = later.get("rooms", {}).get("join", {}).get(room_id, {})
    assert room.get("timeline", {}).get("events", []) == []
    # And a fresh initial /sync still starts the timeline at bob's join.
    status, fresh = await bob.call("GET", "/_matrix/client/v3/sync?timeout=0")
    assert status == 200, fresh
    events = fresh["rooms"]["join"][room_id]["timeline"]["events"]
    assert not [e for e in events if e["type"] == "m.room.message"]

    # The conversation goes on as before.
    await send_text(alice, room_id, "t31", "message 31")
