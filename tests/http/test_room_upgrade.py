"""POST /rooms/{roomId}/upgrade (C-S "Room Upgrades") through the real application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from federation.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.services.room_upgrade import copied_power_levels, restricted_power_levels
from tests.http.account_helpers import running_server
from tests.http.room_helpers import (
    SERVER_NAME,
    Client,
    Reply,
    User,
    current_state,
    q,
    register_users,
)
from tests.http.sync_helpers import sync, timeline


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def upgrade(user: User, room_id: str, new_version: str, **extra: object) -> str:
    reply = await user.call(
        "POST", f"/rooms/{q(room_id)}/upgrade", {"new_version": new_version, **extra}
    )
    assert reply.status == 200, reply.body
    replacement: str = reply.body["replacement_room"]
    return replacement


async def test_upgrade_10_to_11_links_the_rooms_both_ways(
    client: Client, users: list[User]
) -> None:
    alice = users[0]
    old = await alice.create_room(room_version="10")
    new = await upgrade(alice, old, "11")
    assert new != old
    old_state = await current_state(client.deps, old)
    new_state = await current_state(client.deps, new)
    tombstone = old_state[("m.room.tombstone", "")]
    assert tombstone["replacement_room"] == new
    create = new_state[("m.room.create", "")]
    assert create["room_version"] == "11"
    assert create["predecessor"]["room_id"] == old
    tombstone_event = (await client.deps.engine.state.get_current_state(old))[
        ("m.room.tombstone", "")
    ]
    assert create["predecessor"]["event_id"] == tombstone_event.event_id
    assert new_state[("m.room.member", alice.user_id)]["membership"] == "join"


async def test_upgrade_to_12_makes_the_upgrader_and_additional_creators_creators(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    old = await alice.create_room(room_version="11")
    new = await upgrade(alice, old, "12", additional_creators=[bob.user_id])
    new_state = await current_state(client.deps, new)
    create = new_state[("m.room.create", "")]
    assert create["room_version"] == "12"
    assert create["predecessor"] == {"room_id": old}
    assert create["additional_creators"] == [bob.user_id]
    # v12: creators are never listed in the power levels' users.
    assert alice.user_id not in new_state[("m.room.power_levels", "")]["users"]
    old_state = await current_state(client.deps, old)
    assert old_state[("m.room.tombstone", "")]["replacement_room"] == new


async def test_transferable_state_and_bans_are_copied(client: Client, users: list[User]) -> None:
    alice = users[0]
    old = await alice.create_room(name="Old name", topic="the topic", room_version="10")
    copied = {
        "m.room.avatar": {"url": "mxc://example.org/abc"},
        "m.room.encryption": {"algorithm": "m.megolm.v1.aes-sha2"},
        "m.room.server_acl": {"allow": ["*"], "allow_ip_literals": False, "deny": ["evil.com"]},
        "m.room.history_visibility": {"history_visibility": "joined"},
        "m.room.join_rules": {"join_rule": "public"},
        "m.room.guest_access": {"guest_access": "forbidden"},
    }
    for event_type, content in copied.items():
        assert (await alice.put_state(old, event_type, content)).status == 200
    banned = "@mallory:elsewhere.example"
    assert (
        await alice.put_state(old, "m.room.member", {"membership": "ban"}, banned)
    ).status == 200
    new = await upgrade(alice, old, "11")
    state = await current_state(client.deps, new)
    for event_type, content in copied.items():
        assert state[(event_type, "")] == content
    assert state[("m.room.name", "")] == {"name": "Old name"}
    assert state[("m.room.topic", "")]["topic"] == "the topic"
    assert state[("m.room.member", banned)] == {"membership": "ban"}


async def test_power_levels_are_copied_with_the_upgrader_restored(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    old = await alice.create_room(preset="public_chat")
    assert (await bob.join(old)).status == 200
    levels = (await current_state(client.deps, old))[("m.room.power_levels", "")]
    levels["users"][bob.user_id] = 50
    levels["events"]["m.room.tombstone"] = 50
    assert (await alice.put_state(old, "m.room.power_levels", levels)).status == 200
    new = await upgrade(bob, old, "11")
    # Bob needed 100 to copy the state; the room ends with the old levels.
    assert (await current_state(client.deps, new))[("m.room.power_levels", "")] == levels
    # Bob may not change the old room's levels: they stay as they were.
    assert (await current_state(client.deps, old))[("m.room.power_levels", "")] == levels


async def test_old_room_power_levels_are_restricted(client: Client, users: list[User]) -> None:
    alice = users[0]
    old = await alice.create_room()
    levels = (await current_state(client.deps, old))[("m.room.power_levels", "")]
    levels["users_default"] = 80
    assert (await alice.put_state(old, "m.room.power_levels", levels)).status == 200
    await upgrade(alice, old, "11")
    restricted = (await current_state(client.deps, old))[("m.room.power_levels", "")]
    assert restricted["events_default"] == 81
    assert restricted["invite"] == 81

    other = await alice.create_room()
    await upgrade(alice, other, "11")
    restricted = (await current_state(client.deps, other))[("m.room.power_levels", "")]
    assert (restricted["events_default"], restricted["invite"]) == (50, 50)


async def test_aliases_canonical_alias_and_publication_move(
    client: Client, users: list[User]
) -> None:
    alice = users[0]
    old = await alice.create_room(room_alias_name="main", visibility="public")
    second = f"#second:{SERVER_NAME}"
    assert (await alice.call("PUT", f"/directory/room/{q(second)}", {"room_id": old})).status == 200
    canonical = {"alias": f"#main:{SERVER_NAME}", "alt_aliases": [second]}
    assert (await alice.put_state(old, "m.room.canonical_alias", canonical)).status == 200
    new = await upgrade(alice, old, "11")
    for alias in (f"#main:{SERVER_NAME}", second):
        resolved = await alice.call("GET", f"/directory/room/{q(alias)}")
        assert resolved.body["room_id"] == new
    assert (await current_state(client.deps, new))[("m.room.canonical_alias", "")] == canonical
    assert (await current_state(client.deps, old))[("m.room.canonical_alias", "")] == {}
    listed = await alice.call("GET", f"/directory/list/room/{q(new)}")
    assert listed.body == {"visibility": "public"}
    listed = await alice.call("GET", f"/directory/list/room/{q(old)}")
    assert listed.body == {"visibility": "private"}


async def test_member_without_power_is_forbidden(client: Client, users: list[User]) -> None:
    alice, bob = users
    old = await alice.create_room(preset="public_chat")
    assert (await bob.join(old)).status == 200
    reply = await bob.call("POST", f"/rooms/{q(old)}/upgrade", {"new_version": "11"})
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")
    assert ("m.room.tombstone", "") not in await current_state(client.deps, old)


async def test_bad_requests_are_rejected(client: Client, users: list[User]) -> None:
    alice = users[0]
    old = await alice.create_room()
    path = f"/rooms/{q(old)}/upgrade"
    reply = await alice.call("POST", path, {"new_version": "my_bad_version"})
    assert (reply.status, reply.body["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")
    reply = await alice.call("POST", path, {})
    assert (reply.status, reply.body["errcode"]) == (400, "M_MISSING_PARAM")
    reply = await alice.call("POST", path, {"new_version": "12", "additional_creators": [1]})
    assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM")
    reply = await alice.call("POST", "/rooms/!fail:unknown/upgrade", {"new_version": "11"})
    assert (reply.status, reply.body["errcode"]) == (404, "M_NOT_FOUND")


async def test_sync_shows_the_tombstone_and_the_new_rooms_predecessor(
    client: Client, users: list[User]
) -> None:
    alice = users[0]
    old = await alice.create_room()
    first = await sync(alice)
    new = await upgrade(alice, old, "11")
    body = await sync(alice, since=first["next_batch"])
    old_events = timeline(body, old)
    assert old_events[0]["type"] == "m.room.tombstone"
    assert old_events[0]["content"]["replacement_room"] == new
    new_events = timeline(body, new)
    assert new_events[0]["type"] == "m.room.create"
    assert new_events[0]["content"]["predecessor"] == {
        "room_id": old,
        "event_id": old_events[0]["event_id"],
    }


async def test_joiners_keep_direct_tags_and_room_push_rules(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    old = await alice.create_room(preset="public_chat")
    assert (await bob.join(old)).status == 200
    direct_path = f"/user/{q(alice.user_id)}/account_data/m.direct"
    assert (await alice.call("PUT", direct_path, {bob.user_id: [old]})).status == 200
    tag_path = f"/user/{q(bob.user_id)}/rooms/{q(old)}/tags/u.work"
    assert (await bob.call("PUT", tag_path, {"order": 0.5})).status == 200
    rule = await bob.call("PUT", f"/pushrules/global/room/{q(old)}", {"actions": ["notify"]})
    assert rule.status == 200, rule.body
    new = await upgrade(alice, old, "11")
    # The upgrader joined the new room on creating it.
    direct = await eventually(alice, direct_path, lambda r: new in r.body.get(bob.user_id, []))
    assert direct.body == {bob.user_id: [old, new]}
    assert (await bob.join(new)).status == 200
    tags_path = f"/user/{q(bob.user_id)}/rooms/{q(new)}/tags"
    tags = await eventually(bob, tags_path, lambda r: bool(r.body["tags"]))
    assert tags.body == {"tags": {"u.work": {"order": 0.5}}}
    rule_path = f"/pushrules/global/room/{q(new)}"
    copied = await eventually(bob, rule_path, lambda r: r.status == 200)
    assert copied.body["actions"] == ["notify"]


async def eventually(user: User, path: str, ready: Callable[[Reply], bool]) -> Reply:
    """GET `path` until `ready` (the copies are made by a hook run after the join answers)."""
    for _ in range(50):
        reply = await user.call("GET", path)
        if ready(reply):
            return reply
        await asyncio.sleep(0.05)
    return reply


def test_copied_levels_become_integers_and_drop_v12_creators() -> None:
    v9, v12 = KNOWN_ROOM_VERSIONS["9"], KNOWN_ROOM_VERSIONS["12"]
    old = {"ban": "50", "users": {"@a:x": "100", "@b:x": 10}, "events": {"m.room.name": " 40 "}}
    copied = copied_power_levels(old, v9, v12, ["@a:x"])
    assert copied == {"ban": 50, "users": {"@b:x": 10}, "events": {"m.room.name": 40}}


def test_restricted_levels_never_lower_a_level() -> None:
    v11 = KNOWN_ROOM_VERSIONS["11"]
    assert restricted_power_levels({"events_default": 90, "invite": 0}, v11) == {
        "events_default": 90,
        "invite": 50,
    }
