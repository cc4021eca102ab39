"""Inbound `m.presence` EDUs (S2S "Presence"): kept for the sending server's own users who
share a room with us, shown to local users' /sync, and dropped otherwise."""

from __future__ import annotations

from typing import Any

from homeserver.services.filters import EventFilter
from homeserver.services.presence import PresenceService
from tests.federation_api.conftest import ALICE, JoinedRoom
from tests.federation_api.support import World, now_ms, path_of


async def send_edus(world: World, txn_id: str, edus: list[Any]) -> Any:
    body = {
        "origin": world.remote.server_name,
        "origin_server_ts": now_ms(),
        "pdus": [],
        "edus": edus,
    }
    path = path_of("/_matrix/federation/v1/send/{}", txn_id)
    return await world.remote.call(world.federation_url, "PUT", path, body)


def presence_edu(user_id: str, presence: str = "online", **extra: Any) -> dict[str, Any]:
    update = {"user_id": user_id, "presence": presence, "last_active_ago": 5000, **extra}
    return {"edu_type": "m.presence", "content": {"push": [update]}}


def service(world: World) -> PresenceService:
    assert world.deps.presence is not None
    return world.deps.presence.presence


async def test_remote_members_presence_is_kept_and_shown_to_local_members(
    world: World, joined_room: JoinedRoom
) -> None:
    bob = joined_room.bob
    before = world.deps.sync.streams.current_token()
    edu = presence_edu(bob, "unavailable", status_msg="on a train", currently_active=False)
    reply = await send_edus(world, "p1", [edu])
    assert (reply.status, reply.body) == (200, {"pdus": {}})
    state = service(world).get(bob)
    assert state is not None
    content = state.content(service(world).now_ms())
    assert content["presence"] == "unavailable" and content["status_msg"] == "on a train"
    assert 5000 <= content["last_active_ago"] < 10_000
    # Alice shares the room: her incremental /sync section has bob's update.
    section = world.deps.sync.sync.presence
    assert section is not None
    now = world.deps.sync.streams.current_token()
    events = await section.section(ALICE, [joined_room.room_id], before, now, EventFilter())
    assert [(e["sender"], e["content"]["presence"]) for e in events] == [(bob, "unavailable")]


async def test_presence_about_another_servers_user_is_dropped(
    world: World, joined_room: JoinedRoom
) -> None:
    reply = await send_edus(world, "p2", [presence_edu("@eve:elsewhere.example")])
    assert reply.status == 200, reply.body
    assert service(world).get("@eve:elsewhere.example") is None
    # …and so is a claim about our own user.
    reply = await send_edus(world, "p3", [presence_edu(ALICE, "offline")])
    assert reply.status == 200, reply.body
    ours = service(world).get(ALICE)
    assert ours is None or ours.presence != "offline"


async def test_presence_of_a_user_sharing_no_room_is_ignored(
    world: World, joined_room: JoinedRoom
) -> None:
    stranger = world.remote.user("carol")
    reply = await send_edus(world, "p4", [presence_edu(stranger)])
    assert reply.status == 200, reply.body
    assert service(world).get(stranger) is None


async def test_malformed_presence_is_dropped_alone(world: World, joined_room: JoinedRoom) -> None:
    bad = {"edu_type": "m.presence", "content": {"push": [{"user_id": joined_room.bob}]}}
    reply = await send_edus(world, "p5", [bad, presence_edu(joined_room.bob)])
    assert reply.status == 200, reply.body
    state = service(world).get(joined_room.bob)
    assert state is not None and state.presence == "online"
