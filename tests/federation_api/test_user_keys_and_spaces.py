"""Devices and E2E key endpoints for servers, and space hierarchies (S2S and C-S)."""

from __future__ import annotations

import pytest

from federation.room_versions import V11
from homeserver.errors import MatrixError
from homeserver.services.event_builder import NewEvent
from homeserver.services.space_hierarchy import SpaceHierarchy
from homeserver.storage import accounts, users
from tests.federation_api.conftest import ALICE
from tests.federation_api.support import World, path_of

V1 = "/_matrix/federation/v1"


async def _room(world: World, *, join_rule: str, extra: list[NewEvent], space: bool) -> str:
    create_content = {"type": "m.space"} if space else {}
    events = await world.deps.engine.pipeline.create_room_events(
        V11,
        [
            NewEvent("m.room.create", ALICE, create_content, ""),
            NewEvent("m.room.member", ALICE, {"membership": "join"}, ALICE),
            NewEvent("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, ""),
            NewEvent("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""),
            NewEvent("m.room.history_visibility", ALICE, {"history_visibility": "shared"}, ""),
            *extra,
        ],
    )
    return events[0].room_id


def _child(room_id: str, **content: object) -> NewEvent:
    return NewEvent("m.space.child", ALICE, {"via": ["veche.test"], **content}, room_id)


async def test_user_devices_lists_local_devices(world: World) -> None:
    await users.create_user(world.deps.pool, ALICE, None, created_ts=0)
    await accounts.create_device(world.deps.pool, ALICE, "PHONE", "Alice's phone", 1)
    await accounts.create_device(world.deps.pool, ALICE, "LAPTOP", None, 2)
    reply = await world.remote.call(
        world.federation_url, "GET", path_of(V1 + "/user/devices/{}", ALICE)
    )
    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == ALICE
    assert isinstance(reply.body["stream_id"], int)
    assert reply.body["devices"] == [
        {"device_id": "PHONE", "device_display_name": "Alice's phone"},
        {"device_id": "LAPTOP"},
    ]


async def test_user_devices_of_unknown_or_foreign_users_are_refused(world: World) -> None:
    unknown = await world.remote.call(
        world.federation_url, "GET", path_of(V1 + "/user/devices/{}", "@nobody:veche.test")
    )
    assert unknown.status == 404
    foreign = await world.remote.call(
        world.federation_url, "GET", path_of(V1 + "/user/devices/{}", world.remote.user("bob"))
    )
    assert foreign.status == 403


async def test_keys_query_and_claim_answer_well_formed_empty_results(world: World) -> None:
    await users.create_user(world.deps.pool, ALICE, None, created_ts=0)
    await accounts.create_device(world.deps.pool, ALICE, "PHONE", None, 1)
    query = await world.remote.call(
        world.federation_url,
        "POST",
        V1 + "/user/keys/query",
        {"device_keys": {ALICE: [], "@nobody:veche.test": ["X"]}},
    )
    assert query.status == 200, query.body
    assert query.body == {"device_keys": {ALICE: {}}}
    claim = await world.remote.call(
        world.federation_url,
        "POST",
        V1 + "/user/keys/claim",
        {"one_time_keys": {ALICE: {"PHONE": "signed_curve25519"}}},
    )
    assert claim.status == 200, claim.body
    assert claim.body == {"one_time_keys": {}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/user/keys/query", {}),
        ("/user/keys/query", {"device_keys": {"not-a-user": []}}),
        ("/user/keys/query", {"device_keys": {ALICE: "PHONE"}}),
        ("/user/keys/claim", {"one_time_keys": []}),
        ("/user/keys/claim", {"one_time_keys": {ALICE: {"PHONE": 1}}}),
    ],
)
async def test_keys_endpoints_reject_bad_bodies(world: World, path: str, body: object) -> None:
    reply = await world.remote.call(world.federation_url, "POST", V1 + path, body)
    assert reply.status == 400, reply.body
    assert reply.body["errcode"] == "M_BAD_JSON"


async def _space_with_children(world: World) -> tuple[str, str, str, str]:
    public = await _room(
        world,
        join_rule="public",
        space=False,
        extra=[NewEvent("m.room.name", ALICE, {"name": "Lobby"}, "")],
    )
    private = await _room(world, join_rule="invite", space=False, extra=[])
    unknown = "!unknown:elsewhere.test"
    space = await _room(
        world,
        join_rule="public",
        space=True,
        extra=[
            _child(public, order="b", suggested=True),
            _child(private, order="a"),
            _child(unknown),
            NewEvent("m.space.child", ALICE, {"via": []}, "!invalid:veche.test"),
        ],
    )
    return space, public, private, unknown


async def test_federation_hierarchy_describes_the_space_and_its_children(world: World) -> None:
    space, public, private, _ = await _space_with_children(world)
    reply = await world.remote.call(
        world.federation_url, "GET", path_of(V1 + "/hierarchy/{}", space)
    )
    assert reply.status == 200, reply.body
    room = reply.body["room"]
    assert room["room_id"] == space
    assert room["room_type"] == "m.space"
    assert room["num_joined_members"] == 1
    assert room["join_rule"] == "public"
    # Ordered by `order`; the child without valid `via` is not listed.
    assert [c["state_key"] for c in room["children_state"]] == [
        private,
        public,
        "!unknown:elsewhere.test",
    ]
    assert all("origin_server_ts" in c for c in room["children_state"])
    assert [c["room_id"] for c in reply.body["children"]] == [public]
    assert reply.body["children"][0]["name"] == "Lobby"
    assert reply.body["inaccessible_children"] == [private]


async def test_federation_hierarchy_suggested_only_and_unknown_room(world: World) -> None:
    space, public, _, _ = await _space_with_children(world)
    reply = await world.remote.call(
        world.federation_url,
        "GET",
        path_of(V1 + "/hierarchy/{}", space) + "?suggested_only=true",
    )
    assert reply.status == 200, reply.body
    assert [c["state_key"] for c in reply.body["room"]["children_state"]] == [public]
    missing = await world.remote.call(
        world.federation_url, "GET", path_of(V1 + "/hierarchy/{}", "!nope:veche.test")
    )
    assert missing.status == 404


async def test_client_hierarchy_walks_visible_rooms_and_paginates(world: World) -> None:
    space, public, private, _ = await _space_with_children(world)
    hierarchy = SpaceHierarchy(world.deps.engine.state)
    everything = await hierarchy.client_hierarchy(
        ALICE, space, suggested_only=False, limit=None, max_depth=None, from_token=None
    )
    # alice is joined everywhere: the space, then its children in order.
    assert [r["room_id"] for r in everything["rooms"]] == [space, private, public]
    outsider = "@eve:veche.test"
    seen = await hierarchy.client_hierarchy(
        outsider, space, suggested_only=False, limit=1, max_depth=None, from_token=None
    )
    assert [r["room_id"] for r in seen["rooms"]] == [space]
    rest = await hierarchy.client_hierarchy(
        outsider,
        space,
        suggested_only=False,
        limit=1,
        max_depth=None,
        from_token=seen["next_batch"],
    )
    assert [r["room_id"] for r in rest["rooms"]] == [public]
    assert "next_batch" not in rest
    shallow = await hierarchy.client_hierarchy(
        ALICE, space, suggested_only=False, limit=None, max_depth=0, from_token=None
    )
    assert [r["room_id"] for r in shallow["rooms"]] == [space]


async def test_client_hierarchy_of_a_hidden_room_is_403(world: World) -> None:
    _, _, private, _ = await _space_with_children(world)
    hierarchy = SpaceHierarchy(world.deps.engine.state)
    with pytest.raises(MatrixError) as caught:
        await hierarchy.client_hierarchy(
            "@eve:veche.test",
            private,
            suggested_only=False,
            limit=None,
            max_depth=None,
            from_token=None,
        )
    assert caught.value.status == 403
