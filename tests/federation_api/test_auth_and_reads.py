"""X-Matrix authentication, server allow/deny lists, ACLs, and the room reads for servers."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from federation.signing import generate_signing_key
from federation.xmatrix import build_authorization_header
from homeserver.storage import users
from tests.federation_api.conftest import ALICE, JoinedRoom, create_room
from tests.federation_api.support import OUR_NAME, Reply, World, path_of, running_world
from tests.federation_api.test_transactions import message, send

V1 = "/_matrix/federation/v1"


async def state_ids(world: World, room: JoinedRoom, *, as_other: bool = False) -> Reply:
    server = world.other if as_other else world.remote
    path = (
        path_of(V1 + "/state_ids/{}", room.room_id)
        + "?event_id="
        + path_of("{}", room.join_event_id)
    )
    return await server.call(world.federation_url, "GET", path)


async def test_missing_authorization_is_401(world: World, joined_room: JoinedRoom) -> None:
    reply = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/event/{}", joined_room.join_event_id),
        sign=False,
    )
    assert reply.status == 401
    assert reply.body["errcode"] == "M_UNAUTHORIZED"


async def test_wrong_destination_is_401(world: World, joined_room: JoinedRoom) -> None:
    path = path_of(V1 + "/event/{}", joined_room.join_event_id)
    header = world.remote.authorization("GET", path, None, destination="elsewhere.test")
    reply = await world.remote.call(world.federation_url, "GET", path, authorization=header)
    assert reply.status == 401


async def test_signature_over_another_uri_is_401(world: World, joined_room: JoinedRoom) -> None:
    path = path_of(V1 + "/event/{}", joined_room.join_event_id)
    header = world.remote.authorization("GET", path + "?x=1", None)
    reply = await world.remote.call(world.federation_url, "GET", path, authorization=header)
    assert reply.status == 401


async def test_tampered_body_is_401(world: World) -> None:
    path = path_of(V1 + "/send/{}", "t-tamper")
    body = {"origin": world.remote.server_name, "origin_server_ts": 1, "pdus": []}
    header = world.remote.authorization("PUT", path, {**body, "origin_server_ts": 2})
    reply = await world.remote.call(world.federation_url, "PUT", path, body, authorization=header)
    assert reply.status == 401


async def test_unknown_key_is_401(world: World, joined_room: JoinedRoom) -> None:
    path = path_of(V1 + "/event/{}", joined_room.join_event_id)
    stranger = generate_signing_key("unknown9")
    header = build_authorization_header(
        "GET", path, world.remote.server_name, OUR_NAME, None, stranger
    )
    reply = await world.remote.call(world.federation_url, "GET", path, authorization=header)
    assert reply.status == 401


async def test_denied_servers_are_403(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_world(
        tmp_path, migrated_db_dsn, pool, federation={"allowed_servers": ["friend.test"]}
    ) as world:
        reply = await world.remote.call(
            world.federation_url, "GET", path_of(V1 + "/event/{}", "$x")
        )
        assert reply.status == 403
        assert reply.body["errcode"] == "M_FORBIDDEN"


async def test_state_ids_and_event_are_refused_to_a_server_with_no_members(
    world: World, joined_room: JoinedRoom
) -> None:
    assert (await state_ids(world, joined_room, as_other=True)).status == 403
    event = await world.other.call(
        world.federation_url, "GET", path_of(V1 + "/event/{}", joined_room.join_event_id)
    )
    assert event.status == 403
    assert event.body["errcode"] == "M_FORBIDDEN"


async def test_a_member_server_reads_state_ids_state_event_and_auth_chain(
    world: World, joined_room: JoinedRoom
) -> None:
    reply = await state_ids(world, joined_room)
    assert reply.status == 200, reply.body
    current = await world.deps.engine.state.get_current_state_ids(joined_room.room_id)
    before_join = {i for k, i in current.items() if k != ("m.room.member", joined_room.bob)}
    assert set(reply.body["pdu_ids"]) == before_join
    assert current[("m.room.create", "")] in reply.body["auth_chain_ids"]
    event = await world.remote.call(
        world.federation_url, "GET", path_of(V1 + "/event/{}", joined_room.join_event_id)
    )
    assert event.status == 200
    assert [p["state_key"] for p in event.body["pdus"]] == [joined_room.bob]
    auth = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/event_auth/{}/{}", joined_room.room_id, joined_room.join_event_id),
    )
    assert {p["type"] for p in auth.body["auth_chain"]} >= {"m.room.create", "m.room.join_rules"}


async def test_backfill_and_get_missing_events_walk_back_through_prev_events(
    world: World, joined_room: JoinedRoom
) -> None:
    _, first = await message(world, joined_room, "one")
    await send(world, "t-b1", [first])
    second_id, second = await message(world, joined_room, "two")
    await send(world, "t-b2", [second])
    backfill = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/backfill/{}", joined_room.room_id)
        + "?limit=3&v="
        + path_of("{}", second_id),
    )
    assert backfill.status == 200, backfill.body
    assert [p["content"].get("body") for p in backfill.body["pdus"][:2]] == ["two", "one"]
    assert len(backfill.body["pdus"]) == 3
    missing = await world.remote.call(
        world.federation_url,
        "POST",
        path_of(V1 + "/get_missing_events/{}", joined_room.room_id),
        {"earliest_events": [joined_room.join_event_id], "latest_events": [second_id]},
    )
    assert missing.status == 200, missing.body
    assert [p["content"]["body"] for p in missing.body["events"]] == ["one"]


async def test_server_acl_denies_reads_and_pdus(world: World, joined_room: JoinedRoom) -> None:
    await world.deps.engine.pipeline.create_local_event(
        joined_room.room_id, "m.room.server_acl", ALICE, {"allow": ["veche.test"]}, ""
    )
    assert (await state_ids(world, joined_room)).status == 403
    event_id, pdu = await message(world, joined_room, "denied")
    reply = await send(world, "t-acl", [pdu])
    assert "ACL" in reply.body["pdus"][event_id]["error"]


async def test_query_directory_and_profile(world: World) -> None:
    room_id = await create_room(world)
    aliases = world.deps.room_services.aliases
    await aliases.create_alias_unchecked(ALICE, "#lobby:veche.test", room_id)
    reply = await world.remote.call(
        world.federation_url, "GET", V1 + "/query/directory?room_alias=%23lobby%3Aveche.test"
    )
    assert reply.status == 200, reply.body
    assert reply.body == {"room_id": room_id, "servers": ["veche.test"]}
    unknown = await world.remote.call(
        world.federation_url, "GET", V1 + "/query/directory?room_alias=%23nope%3Aveche.test"
    )
    assert unknown.status == 404
    await users.create_user(world.deps.pool, "@carol:veche.test", None, created_ts=0)
    profile = await world.remote.call(
        world.federation_url,
        "GET",
        V1 + "/query/profile?user_id=%40carol%3Aveche.test&field=displayname",
    )
    assert profile.status == 200, profile.body
    assert profile.body == {"displayname": "carol"}
    nobody = await world.remote.call(
        world.federation_url, "GET", V1 + "/query/profile?user_id=%40nobody%3Aveche.test"
    )
    assert nobody.status == 404
