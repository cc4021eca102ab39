"""A real event pipeline on a test database, and helpers to create rooms through it."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from federation.pdu import Event
from federation.room_versions import V11, RoomVersion
from federation.signing import SigningKey, generate_signing_key
from homeserver.services.event_builder import NewEvent
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.notifier import Notifier
from homeserver.services.state import RoomStateCache
from homeserver.services.streams import StreamTracker
from homeserver.storage.events import EventsStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.state import StateStore

SERVER = "veche.test"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
MEMBER = "m.room.member"


@dataclass
class Harness:
    pipeline: EventPipeline
    cache: RoomStateCache
    events: EventsStore
    rooms: RoomsStore
    state: StateStore
    notifier: Notifier
    tracker: StreamTracker
    signing_key: SigningKey


async def make_harness(
    pool: asyncpg.Pool, *, signing_key: SigningKey | None = None, max_batch: int = 100
) -> Harness:
    """Everything wired as homeserver/app.py would, starting from what the database holds."""
    events = EventsStore(pool, SERVER)
    rooms = RoomsStore(pool)
    state = StateStore(pool)
    cache = RoomStateCache(events, rooms, state)
    tracker = StreamTracker("events", await events.get_max_stream_ordering())
    notifier = Notifier(tracker)
    key = signing_key or generate_signing_key("test")
    pipeline = EventPipeline(
        events=events,
        rooms=rooms,
        state=cache,
        notifier=notifier,
        tracker=tracker,
        server_name=SERVER,
        signing_key=key,
        max_batch=max_batch,
    )
    return Harness(pipeline, cache, events, rooms, state, notifier, tracker, key)


def initial_events(
    creator: str, room_version: RoomVersion = V11, *, join_rule: str = "public"
) -> list[NewEvent]:
    """What /createRoom sends for a simple room: create, join, power levels, join rules."""
    # v12: room creators have infinite power and must not be listed in `users`.
    users = {} if room_version.privileged_room_creators else {creator: 100}
    return [
        NewEvent("m.room.create", creator, {}, ""),
        NewEvent(MEMBER, creator, {"membership": "join"}, creator),
        NewEvent("m.room.power_levels", creator, {"users": users}, ""),
        NewEvent("m.room.join_rules", creator, {"join_rule": join_rule}, ""),
        NewEvent("m.room.history_visibility", creator, {"history_visibility": "shared"}, ""),
    ]


async def create_room(
    harness: Harness, creator: str = ALICE, room_version: RoomVersion = V11
) -> tuple[str, list[Event]]:
    events = await harness.pipeline.create_room_events(
        room_version, initial_events(creator, room_version)
    )
    return events[0].room_id, events


async def count_rows(pool: asyncpg.Pool, table: str) -> int:
    value = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return int(value)
