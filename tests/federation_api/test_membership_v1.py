"""The v1 membership endpoints older servers call: `send_join`, `send_leave` and `invite`
answer `[200, {...}]` (invites-v1.yaml), with the same rules as v2."""

from __future__ import annotations

from federation.room_versions import V11
from homeserver.storage import users
from tests.federation_api.conftest import ALICE, JoinedRoom, create_room
from tests.federation_api.support import World, path_of

V1 = "/_matrix/federation/v1"


async def test_v1_send_join_answers_the_array_form_and_joins_the_member(world: World) -> None:
    room_id = await create_room(world)
    remote, bob = world.remote, world.remote.user("bob")
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_join/{}/{}", room_id, bob) + "?ver=11"
    )
    event_id, pdu = remote.sign_event(made.body["event"])

    sent = await remote.call(
        world.federation_url, "PUT", path_of(V1 + "/send_join/{}/{}", room_id, event_id), pdu
    )

    assert sent.status == 200, sent.body
    status, body = sent.body
    assert status == 200
    assert set(body) == {"origin", "state", "auth_chain"}  # no v2-only fields
    assert body["origin"] == "veche.test"
    assert ("m.room.member", ALICE) in {(e["type"], e.get("state_key")) for e in body["state"]}
    assert body["auth_chain"]
    current = await world.deps.engine.state.get_current_state(room_id)
    assert current[("m.room.member", bob)].membership == "join"


async def test_v1_send_leave_answers_200_and_an_empty_object(
    world: World, joined_room: JoinedRoom
) -> None:
    remote, room_id, bob = world.remote, joined_room.room_id, joined_room.bob
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_leave/{}/{}", room_id, bob)
    )
    event_id, pdu = remote.sign_event(made.body["event"])

    sent = await remote.call(
        world.federation_url, "PUT", path_of(V1 + "/send_leave/{}/{}", room_id, event_id), pdu
    )

    assert sent.status == 200, sent.body
    assert sent.body == [200, {}]
    current = await world.deps.engine.state.get_current_state(room_id)
    assert current[("m.room.member", bob)].membership == "leave"


async def test_v1_send_join_with_a_forged_signature_is_refused(world: World) -> None:
    room_id = await create_room(world)
    remote, bob = world.remote, world.remote.user("bob")
    made = await remote.call(
        world.federation_url, "GET", path_of(V1 + "/make_join/{}/{}", room_id, bob) + "?ver=11"
    )
    event_id, pdu = remote.sign_event(made.body["event"])
    pdu["content"] = {"membership": "join", "displayname": "changed after signing"}

    sent = await remote.call(
        world.federation_url, "PUT", path_of(V1 + "/send_join/{}/{}", room_id, event_id), pdu
    )

    assert sent.status in (400, 403), sent.body
    assert isinstance(sent.body, dict) and "errcode" in sent.body
    current = await world.deps.engine.state.get_current_state_ids(room_id)
    assert ("m.room.member", bob) not in current


async def test_v1_invite_takes_the_event_as_body_and_answers_it_co_signed(
    world: World, joined_room: JoinedRoom
) -> None:
    carol = "@carol:veche.test"
    await users.create_user(world.deps.pool, carol, None, created_ts=0)
    remote, room_id, bob = world.remote, joined_room.room_id, joined_room.bob
    state = await world.deps.engine.state.get_current_state_ids(room_id)
    join = (await world.deps.engine.state.get_events([joined_room.join_event_id]))[
        joined_room.join_event_id
    ]
    auth = [state[("m.room.create", "")], state[("m.room.power_levels", "")], join.event_id]
    event_id, invite = remote.build_event(
        room_id,
        "m.room.member",
        bob,
        {"membership": "invite"},
        prev_events=[join.event_id],
        auth_events=auth,
        depth=join.depth + 1,
        state_key=carol,
        room_version=V11,
    )
    create = (await world.deps.engine.state.get_events([auth[0]]))[auth[0]]
    body = {**invite, "unsigned": {"invite_room_state": [dict(create.pdu)]}}

    reply = await remote.call(
        world.federation_url, "PUT", path_of(V1 + "/invite/{}/{}", room_id, event_id), body
    )

    assert reply.status == 200, reply.body
    status, answer = reply.body
    assert status == 200
    assert "veche.test" in answer["event"]["signatures"]
    assert answer["event"]["state_key"] == carol


async def test_v1_invite_without_a_json_object_is_a_clear_error(world: World) -> None:
    room_id = await create_room(world)
    reply = await world.remote.call(
        world.federation_url, "PUT", path_of(V1 + "/invite/{}/{}", room_id, "$x"), ["not", "it"]
    )
    assert reply.status == 400
    assert reply.body["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
