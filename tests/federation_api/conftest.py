"""Fixtures: our server and the remote test double, a room of ours, and a remote member."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from federation.room_versions import V11
from homeserver.services.event_builder import NewEvent
from tests.federation_api.support import OUR_NAME, World, path_of, running_world

ALICE = f"@alice:{OUR_NAME}"


@pytest.fixture
async def world(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[World]:
    async with running_world(tmp_path, migrated_db_dsn, pool) as world:
        yield world


async def create_room(world: World, *, join_rule: str = "public") -> str:
    """A v11 room of ours: alice creates it and has power 100."""
    events = await world.deps.engine.pipeline.create_room_events(
        V11,
        [
            NewEvent("m.room.create", ALICE, {}, ""),
            NewEvent("m.room.member", ALICE, {"membership": "join"}, ALICE),
            NewEvent("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, ""),
            NewEvent("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""),
            NewEvent("m.room.history_visibility", ALICE, {"history_visibility": "shared"}, ""),
        ],
    )
    return events[0].room_id


async def remote_join(world: World, room_id: str, user_id: str) -> tuple[str, Any]:
    """make_join then send_join for a remote user; `(join event ID, send_join reply)`."""
    remote = world.remote
    made = await remote.call(
        world.federation_url,
        "GET",
        path_of("/_matrix/federation/v1/make_join/{}/{}", room_id, user_id) + "?ver=10&ver=11",
    )
    assert made.status == 200, made.body
    template = made.body["event"]
    event_id, pdu = remote.sign_event(template)
    sent = await remote.call(
        world.federation_url,
        "PUT",
        path_of("/_matrix/federation/v2/send_join/{}/{}", room_id, event_id),
        pdu,
    )
    return event_id, sent


@dataclass
class JoinedRoom:
    room_id: str
    bob: str
    join_event_id: str


@pytest.fixture
async def joined_room(world: World) -> JoinedRoom:
    room_id = await create_room(world)
    bob = world.remote.user("bob")
    join_event_id, sent = await remote_join(world, room_id, bob)
    assert sent.status == 200, sent.body
    return JoinedRoom(room_id, bob, join_event_id)
