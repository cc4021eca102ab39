"""S2S "Public Room Directory" (GET/POST /v1/publicRooms) and the `m.receipt` / `m.presence`
EDUs of a transaction, against our server with the remote test double."""

from __future__ import annotations

from typing import Any

from tests.federation_api.conftest import ALICE, JoinedRoom, create_room
from tests.federation_api.support import World, now_ms, path_of

PUBLIC_ROOMS = "/_matrix/federation/v1/publicRooms"
EVERYTHING = 2**62


async def send_edus(world: World, txn_id: str, edus: list[Any]) -> Any:
    body = {
        "origin": world.remote.server_name,
        "origin_server_ts": now_ms(),
        "pdus": [],
        "edus": edus,
    }
    return await world.remote.call(
        world.federation_url, "PUT", path_of("/_matrix/federation/v1/send/{}", txn_id), body
    )


def read_receipt(room_id: str, user_id: str, *event_ids: str) -> dict[str, Any]:
    return {
        "edu_type": "m.receipt",
        "content": {
            room_id: {"m.read": {user_id: {"data": {"ts": 1234}, "event_ids": list(event_ids)}}}
        },
    }


async def receipts_seen(world: World, room_id: str) -> dict[str, Any]:
    events = await world.deps.sync.receipts.receipt_events(ALICE, [room_id], 0, EVERYTHING)
    return events.get(room_id, {}).get("content", {})


async def test_public_rooms_lists_only_published_rooms(world: World) -> None:
    published = await create_room(world)
    await create_room(world)  # not in the directory
    await world.deps.engine.rooms.set_room_is_public(published, True)

    reply = await world.remote.call(world.federation_url, "GET", PUBLIC_ROOMS + "?limit=10")
    assert reply.status == 200, reply.body
    assert [room["room_id"] for room in reply.body["chunk"]] == [published]
    assert reply.body["chunk"][0]["num_joined_members"] == 1

    searched = await world.remote.call(
        world.federation_url,
        "POST",
        PUBLIC_ROOMS,
        {
            "limit": 5,
            "filter": {"generic_search_term": "no such room"},
            "include_all_networks": False,
        },
    )
    assert searched.status == 200, searched.body
    assert searched.body["chunk"] == []


async def test_public_rooms_needs_a_signed_request_and_valid_parameters(world: World) -> None:
    unsigned = await world.remote.call(world.federation_url, "GET", PUBLIC_ROOMS, sign=False)
    assert unsigned.status == 401
    bad_limit = await world.remote.call(world.federation_url, "GET", PUBLIC_ROOMS + "?limit=many")
    assert (bad_limit.status, bad_limit.body["errcode"]) == (400, "M_INVALID_PARAM")
    bad_filter = await world.remote.call(
        world.federation_url, "POST", PUBLIC_ROOMS, {"filter": "everything"}
    )
    assert (bad_filter.status, bad_filter.body["errcode"]) == (400, "M_BAD_JSON")


async def test_a_remote_members_read_receipt_is_stored(
    world: World, joined_room: JoinedRoom
) -> None:
    room_id, bob = joined_room.room_id, joined_room.bob
    reply = await send_edus(world, "r1", [read_receipt(room_id, bob, joined_room.join_event_id)])
    assert reply.status == 200, reply.body
    assert await receipts_seen(world, room_id) == {
        joined_room.join_event_id: {"m.read": {bob: {"ts": 1234}}}
    }


async def test_receipts_of_strangers_other_servers_and_other_rooms_are_dropped(
    world: World, joined_room: JoinedRoom
) -> None:
    room_id, bob = joined_room.room_id, joined_room.bob
    elsewhere = await create_room(world)
    state = await world.deps.engine.state.get_current_state_ids(elsewhere)
    other_rooms_event = state[("m.room.create", "")]
    stranger = world.remote.user("stranger")  # of the origin, but not in the room
    edus = [
        read_receipt(room_id, stranger, joined_room.join_event_id),
        read_receipt(room_id, ALICE, joined_room.join_event_id),  # not the origin's user
        read_receipt(room_id, bob, other_rooms_event),  # an event of another room
        read_receipt(room_id, bob),  # malformed: no event IDs
    ]
    reply = await send_edus(world, "r2", edus)
    assert reply.status == 200, reply.body
    assert await receipts_seen(world, room_id) == {}


async def test_presence_edus_are_accepted_and_ignored(
    world: World, joined_room: JoinedRoom
) -> None:
    presence = {
        "edu_type": "m.presence",
        "content": {
            "push": [
                {
                    "user_id": joined_room.bob,
                    "presence": "online",
                    "last_active_ago": 5000,
                    "currently_active": True,
                }
            ]
        },
    }
    reply = await send_edus(world, "p1", [presence])
    assert (reply.status, reply.body) == (200, {"pdus": {}})
