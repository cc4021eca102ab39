"""make_join / send_join, make_leave / send_leave and invites, as a remote server sees them."""

from __future__ import annotations

from federation.room_versions import V11
from homeserver.storage import users
from tests.federation_api.conftest import ALICE, JoinedRoom, create_room, remote_join
from tests.federation_api.support import World, path_of

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


async def test_make_join_send_join_round_trip_produces_a_joined_member(world: World) -> None:
    room_id = await create_room(world)
    bob = world.remote.user("bob")
    event_id, sent = await remote_join(world, room_id, bob)
    assert sent.status == 200, sent.body
    body = sent.body
    state_types = {(e["type"], e.get("state_key")) for e in body["state"]}
    assert ("m.room.create", "") in state_types
    assert ("m.room.member", ALICE) in state_types
    assert body["members_omitted"] is False
    assert body["servers_in_room"] == ["veche.test"]
    # The join comes back with our signature added as the resident server.
    assert "veche.test" in body["event"]["signatures"]
    current = await world.deps.engine.state.get_current_state(room_id)
    assert current[("m.room.member", bob)].event_id == event_id
    assert current[("m.room.member", bob)].membership == "join"


async def test_send_join_with_omit_members_leaves_members_out(world: World) -> None:
    room_id = await create_room(world)
    remote = world.remote
    bob = remote.user("bob")
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_join/{}/{}", room_id, bob) + "?ver=11"
    )
    event_id, pdu = remote.sign_event(made.body["event"])
    sent = await remote.call(
        world.federation_url,
        "PUT",
        path_of(V2 + "/send_join/{}/{}", room_id, event_id) + "?omit_members=true",
        pdu,
    )
    assert sent.status == 200, sent.body
    assert sent.body["members_omitted"] is True
    assert all(e["type"] != "m.room.member" for e in sent.body["state"])
    assert sent.body["servers_in_room"] == ["veche.test"]


async def test_make_join_refuses_unsupported_room_versions(world: World) -> None:
    room_id = await create_room(world)
    reply = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/make_join/{}/{}", room_id, world.remote.user("bob")) + "?ver=9",
    )
    assert reply.status == 400
    assert reply.body["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"
    assert reply.body["room_version"] == "11"


async def test_make_join_refuses_users_of_other_servers(world: World) -> None:
    room_id = await create_room(world)
    reply = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/make_join/{}/{}", room_id, world.other.user("eve")) + "?ver=11",
    )
    assert reply.status == 403


async def test_make_join_to_an_invite_only_room_is_forbidden(world: World) -> None:
    room_id = await create_room(world, join_rule="invite")
    reply = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/make_join/{}/{}", room_id, world.remote.user("bob")) + "?ver=11",
    )
    assert reply.status == 403
    assert reply.body["errcode"] == "M_FORBIDDEN"


async def test_send_join_with_a_forged_signature_is_refused(world: World) -> None:
    room_id = await create_room(world)
    remote = world.remote
    bob = remote.user("bob")
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_join/{}/{}", room_id, bob) + "?ver=11"
    )
    event_id, pdu = remote.sign_event(made.body["event"])
    sig = pdu["signatures"][remote.server_name]
    key_id = next(iter(sig))
    sig[key_id] = sig[key_id][:-4] + ("AAAA" if not sig[key_id].endswith("AAAA") else "BBBB")
    sent = await remote.call(
        world.federation_url, "PUT", path_of(V2 + "/send_join/{}/{}", room_id, event_id), pdu
    )
    assert sent.status == 400
    current = await world.deps.engine.state.get_current_state_ids(room_id)
    assert ("m.room.member", bob) not in current


async def test_remote_member_leaves_through_make_leave_and_send_leave(
    world: World, joined_room: JoinedRoom
) -> None:
    remote, room_id, bob = world.remote, joined_room.room_id, joined_room.bob
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_leave/{}/{}", room_id, bob)
    )
    assert made.status == 200, made.body
    assert made.body["event"]["content"] == {"membership": "leave"}
    event_id, pdu = remote.sign_event(made.body["event"])
    sent = await remote.call(
        world.federation_url, "PUT", path_of(V2 + "/send_leave/{}/{}", room_id, event_id), pdu
    )
    assert sent.status == 200, sent.body
    assert sent.body == {}
    current = await world.deps.engine.state.get_current_state(room_id)
    assert current[("m.room.member", bob)].membership == "leave"


async def test_invite_for_a_local_user_is_co_signed_and_stored_for_sync(world: World) -> None:
    carol = "@carol:veche.test"
    await users.create_user(world.deps.pool, carol, None, created_ts=0)
    remote = world.remote
    inviter = remote.user("dave")
    room_id = f"!elsewhere:{remote.server_name}"
    create_id, create = remote.build_event(
        room_id,
        "m.room.create",
        inviter,
        {"room_version": "11"},
        prev_events=[],
        auth_events=[],
        depth=1,
        state_key="",
    )
    event_id, invite = remote.build_event(
        room_id,
        "m.room.member",
        inviter,
        {"membership": "invite"},
        prev_events=[create_id],
        auth_events=[create_id],
        depth=2,
        state_key=carol,
    )
    body = {"room_version": V11.identifier, "event": invite, "invite_room_state": [create]}
    reply = await remote.call(
        world.federation_url, "PUT", path_of(V2 + "/invite/{}/{}", room_id, event_id), body
    )
    assert reply.status == 200, reply.body
    assert "veche.test" in reply.body["event"]["signatures"]
    memberships = await world.deps.engine.rooms.get_local_memberships(carol)
    assert [(m.room_id, m.membership, m.event_id) for m in memberships] == [
        (room_id, "invite", event_id)
    ]
    stored = await world.deps.engine.state.get_events([event_id])
    assert stored[event_id].pdu["unsigned"]["invite_room_state"][0]["type"] == "m.room.create"


async def test_invite_for_an_unknown_user_is_refused(world: World) -> None:
    remote = world.remote
    inviter = remote.user("dave")
    room_id = f"!elsewhere:{remote.server_name}"
    create_id, create = remote.build_event(
        room_id,
        "m.room.create",
        inviter,
        {"room_version": "11"},
        prev_events=[],
        auth_events=[],
        depth=1,
        state_key="",
    )
    event_id, invite = remote.build_event(
        room_id,
        "m.room.member",
        inviter,
        {"membership": "invite"},
        prev_events=[create_id],
        auth_events=[create_id],
        depth=2,
        state_key="@nobody:veche.test",
    )
    body = {"room_version": "11", "event": invite, "invite_room_state": [create]}
    reply = await remote.call(
        world.federation_url, "PUT", path_of(V2 + "/invite/{}/{}", room_id, event_id), body
    )
    assert reply.status == 403


async def test_knock_through_make_knock_and_send_knock(world: World) -> None:
    room_id = await create_room(world, join_rule="knock")
    remote, bob = world.remote, world.remote.user("bob")
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_knock/{}/{}", room_id, bob) + "?ver=11"
    )
    assert made.status == 200, made.body
    event_id, pdu = remote.sign_event(made.body["event"])
    sent = await remote.call(
        world.federation_url, "PUT", path_of(V1 + "/send_knock/{}/{}", room_id, event_id), pdu
    )
    assert sent.status == 200, sent.body
    assert {e["type"] for e in sent.body["knock_room_state"]} >= {
        "m.room.create",
        "m.room.join_rules",
    }
    current = await world.deps.engine.state.get_current_state(room_id)
    assert current[("m.room.member", bob)].membership == "knock"
