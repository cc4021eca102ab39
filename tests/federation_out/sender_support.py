"""Shared pieces of the outbound sender tests: our signing key, a room with remote members,
local messages, and what the database says about a destination."""

from __future__ import annotations

import asyncpg

from federation.pdu import Event
from federation.signing import generate_signing_key
from tests.federation_out.peer import Attempt, FakePeer, event_id_of
from tests.services.pipeline_harness import ALICE, Harness, create_room

OUR_KEY = generate_signing_key("ours")


async def room_with(h: Harness, *peers: FakePeer) -> tuple[str, list[Event]]:
    """A public room created by alice that each peer's user has joined over federation."""
    room_id, events = await create_room(h)
    create, power_levels, join_rules = events[0], events[2], events[3]
    joins: list[Event] = []
    for fake in peers:
        prev = joins[-1] if joins else events[-1]
        state_before = dict(await h.cache.get_current_state_ids(room_id))
        join = fake.join_event(room_id, prev, [create, power_levels, join_rules])
        await h.pipeline.persist_remote_event(join, state_before)
        joins.append(join)
    return room_id, joins


async def say(h: Harness, room_id: str, body: str) -> Event:
    event: Event = await h.pipeline.create_local_event(
        room_id, "m.room.message", ALICE, {"msgtype": "m.text", "body": body}
    )
    return event


async def say_many(h: Harness, room_id: str, count: int) -> list[str]:
    return [(await say(h, room_id, f"message {i}")).event_id for i in range(count)]


async def retry_row(pool: asyncpg.Pool, destination: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM federation_destinations WHERE destination = $1", destination
    )


def ids_of(attempt: Attempt) -> list[str]:
    """The event IDs of the PDUs a transaction carried."""
    return [event_id_of(pdu) for pdu in attempt.body["pdus"]]
