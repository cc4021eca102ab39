"""The stream reader with the room's joined members from memory (as the server runs it):
the same destinations as from the database, and no database work for rooms of our own users
alone."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import asyncpg

from homeserver.remote.factory import RemoteServices
from homeserver.storage.federation_outbound import FederationOutboundStore, StreamEvent
from tests.federation_out.peer import FakePeer, running_sender, wait_until
from tests.federation_out.sender_support import room_with, say
from tests.services.pipeline_harness import ALICE, Harness, create_room


class _CountingStore(FederationOutboundStore):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.joined_reads = 0
        self.acl_reads = 0
        self.position_writes: list[int] = []

    async def get_joined_servers(self, room_ids: Collection[str]) -> dict[str, set[str]]:
        self.joined_reads += 1
        return await super().get_joined_servers(room_ids)

    async def get_server_acls(self, room_ids: Collection[str]) -> dict[str, dict[str, object]]:
        self.acl_reads += 1
        return await super().get_server_acls(room_ids)

    async def queue_pdus(self, rows: Sequence[tuple[str, StreamEvent]], new_position: int) -> None:
        self.position_writes.append(new_position)
        await super().queue_pdus(rows, new_position)


async def test_members_from_memory_reach_the_remote_server_and_its_kick(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    store = _CountingStore(pool)
    members = harness.cache.get_joined_members
    async with running_sender(harness, remote, pool, store=store, joined_members=members):
        room_id, _ = await room_with(harness, peer)
        message = await say(harness, room_id, "hello carol")
        await wait_until(lambda: message.event_id in peer.received_event_ids())
        kick = await harness.pipeline.create_local_event(
            room_id, "m.room.member", ALICE, {"membership": "leave"}, peer.user_id
        )
        await wait_until(lambda: kick.event_id in peer.received_event_ids())
        after = await say(harness, room_id, "carol is gone")
        await asyncio.sleep(0.2)

    assert after.event_id not in peer.received_event_ids()
    assert store.joined_reads == 0


async def test_a_room_of_local_users_alone_costs_no_query_but_the_position_is_kept(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool
) -> None:
    store = _CountingStore(pool)
    room_id, _ = await create_room(harness)
    members = harness.cache.get_joined_members
    async with running_sender(harness, remote, pool, store=store, joined_members=members):
        for i in range(5):
            await say(harness, room_id, f"only us {i}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        saved_while_running = len(store.position_writes)

    assert store.joined_reads == store.acl_reads == 0
    assert saved_while_running <= 2  # at most once a second, not once per batch
    # Closing saves where the reader got to: a restart does not read these events again.
    assert await store.get_stream_position() == harness.tracker.current_position
    assert await pool.fetchval("SELECT count(*) FROM federation_outbox") == 0
