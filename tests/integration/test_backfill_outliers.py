"""Backfill goes past events first received as outliers (S2S "Backfilling and retrieving
missing events"): the room state a joining server gets in the send_join answer is stored as
outliers; when /messages pages back to those events they are de-outliered and shown in the
timeline, and paging continues to the room's creation.
"""

from __future__ import annotations

from typing import Any

from tests.integration.rooms import create_public_room, put_state
from tests.integration.test_two_servers import Servers, q, send_text
from tests.integration.test_two_servers_backfill import SHARED_HISTORY, page_back


async def test_paging_back_de_outliers_the_room_state_and_reaches_the_rooms_creation(
    servers: Servers,
) -> None:
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    room_id = await create_public_room(alice, initial_state=[SHARED_HISTORY])
    for n in range(1, 4):
        await send_text(alice, room_id, f"t{n}", f"message {n}")
    await put_state(alice, room_id, "m.room.name", {"name": "Renamed"})
    for n in range(4, 7):
        await send_text(alice, room_id, f"t{n}", f"message {n}")
    # The last event before bob's join is a state event: B will hold it as an outlier, and
    # it is the prev event of bob's join, where backfill starts.
    await put_state(alice, room_id, "m.room.topic", {"topic": "Latest"})
    status, joined = await bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(servers.a.name)}", {}
    )
    assert status == 200, joined

    status, sync = await bob.call("GET", "/_matrix/client/v3/sync?timeout=0")
    assert status == 200, sync
    token: Any = sync["rooms"]["join"][room_id]["timeline"]["prev_batch"]
    seen: list[dict[str, Any]] = []
    pages = 0
    while token is not None:
        pages += 1
        assert pages <= 10, "pagination should end"
        chunk, token = await page_back(bob, room_id, token)
        seen += chunk

    types = [e["type"] for e in seen]
    bodies = [e["content"]["body"] for e in seen if e["type"] == "m.room.message"]
    assert bodies == [f"message {n}" for n in range(6, 0, -1)]
    assert types[0] == "m.room.topic"  # the outlier bob's join points at
    assert "m.room.name" in types
    assert types[-1] == "m.room.create"  # all the way back
    assert len({e["event_id"] for e in seen}) == len(seen)
    outliers = await servers.b.deps.pool.fetch(
        "SELECT type FROM events WHERE room_id = $1 AND outlier", room_id
    )
    assert outliers == []  # every one of them is now in the timeline
