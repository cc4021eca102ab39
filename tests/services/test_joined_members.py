"""RoomStateCache.get_joined_members: the joined users per current state, kept up to date as
the pipeline persists joins and leaves (local and received over federation)."""

from __future__ import annotations

from typing import Any

import asyncpg

from federation.hashing import compute_event_id
from federation.pdu import Event
from federation.room_versions import V11
from federation.signing import add_hashes_and_signatures, generate_signing_key
from homeserver.services.account_data import AccountDataService
from homeserver.services.event_pipeline import RemoteEvent
from homeserver.services.push import PushService
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.push_data import PushDataStore
from homeserver.storage.sync_data import SyncDataStore
from tests.services.pipeline_harness import ALICE, BOB, MEMBER, SERVER, create_room, make_harness

CAROL = "@carol:remote.test"
REMOTE_KEY = generate_signing_key("remote")


def remote_join(room_id: str, prev: Event, auth: list[Event]) -> Event:
    pdu: dict[str, Any] = {
        "room_id": room_id,
        "type": MEMBER,
        "sender": CAROL,
        "state_key": CAROL,
        "content": {"membership": "join"},
        "depth": prev.depth + 1,
        "origin_server_ts": 1,
        "prev_events": [prev.event_id],
        "auth_events": [e.event_id for e in auth],
    }
    pdu = add_hashes_and_signatures(pdu, V11, "remote.test", REMOTE_KEY)
    event = Event.from_pdu(pdu, V11)
    assert event.event_id == compute_event_id(pdu, V11)
    return event


async def test_joined_members_follow_local_joins_leaves_and_a_remote_join(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, events = await create_room(h)
    creator_join = events[1]
    assert dict(await h.cache.get_joined_members(room_id)) == {ALICE: creator_join.event_id}

    bob_join = await h.pipeline.create_local_event(
        room_id, MEMBER, BOB, {"membership": "join"}, BOB
    )
    assert dict(await h.cache.get_joined_members(room_id)) == {
        ALICE: creator_join.event_id,
        BOB: bob_join.event_id,
    }

    state_before = dict(await h.cache.get_current_state_ids(room_id))
    carol_join = remote_join(room_id, bob_join, [events[0], events[2], events[3]])
    await h.pipeline.persist_remote_events(room_id, [RemoteEvent(carol_join, state_before)])
    assert dict(await h.cache.get_joined_members(room_id)) == {
        ALICE: creator_join.event_id,
        BOB: bob_join.event_id,
        CAROL: carol_join.event_id,
    }

    await h.pipeline.create_local_event(room_id, MEMBER, BOB, {"membership": "leave"}, BOB)
    joined = await h.cache.get_joined_members(room_id)
    assert dict(joined) == {ALICE: creator_join.event_id, CAROL: carol_join.event_id}

    # A message changes no membership: the same derivation is returned.
    await h.pipeline.create_local_event(
        room_id, "m.room.message", ALICE, {"msgtype": "m.text", "body": "hi"}
    )
    assert await h.cache.get_joined_members(room_id) is joined


async def test_joined_members_reload_from_storage_and_unknown_room_is_empty(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, _ = await create_room(h)
    await h.pipeline.create_local_event(room_id, MEMBER, BOB, {"membership": "join"}, BOB)

    fresh = await make_harness(pool)  # a restarted server: nothing in memory
    assert set(await fresh.cache.get_joined_members(room_id)) == {ALICE, BOB}
    assert dict(await fresh.cache.get_joined_members("!nope:veche.test")) == {}

    # After a forced reload the members are still those of the current state.
    fresh.cache.invalidate_room(room_id)
    await fresh.pipeline.create_local_event(room_id, MEMBER, BOB, {"membership": "leave"}, BOB)
    assert set(await fresh.cache.get_joined_members(room_id)) == {ALICE}


async def test_push_uses_the_joined_members_display_names_and_follows_leaves(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    sync_data = SyncDataStore(pool)
    account_data = AccountDataService(sync_data, AuxStream.in_memory("account_data"))
    push_store = PushDataStore(pool)
    push = PushService(push_store, sync_data, h.cache, account_data, SERVER)
    h.pipeline.add_persisted_hook(push.on_events_persisted)
    # Bob's own rule (the default display-name rule left the spec in v1.17).
    rule = {
        "conditions": [{"kind": "contains_display_name"}],
        "actions": ["notify", {"set_tweak": "highlight"}],
    }
    await push.put_rule(BOB, "override", "bobby", rule, None, None)
    room_id, _ = await create_room(h)
    await h.pipeline.create_local_event(
        room_id, MEMBER, BOB, {"membership": "join", "displayname": "Bobby"}, BOB
    )

    async def say(body: str) -> None:
        content = {"msgtype": "m.text", "body": body}
        await h.pipeline.create_local_event(room_id, "m.room.message", ALICE, content)

    await say("hello")
    await say("are you there, Bobby?")
    await push.wait_until_processed([room_id])  # evaluation runs after the send returns
    counts = (await push_store.get_unread_counts(BOB, [room_id]))[room_id]
    assert (counts.notification_count, counts.highlight_count) == (2, 1)
    assert room_id not in await push_store.get_unread_counts(ALICE, [room_id])  # the sender

    await h.pipeline.create_local_event(room_id, MEMBER, BOB, {"membership": "leave"}, BOB)
    await say("Bobby left")
    await push.wait_until_processed([room_id])
    # His leave read up to it (so no unread count); the message after it did not notify him.
    assert len(await push_store.get_notifications(BOB, None, 10, False)) == 2
