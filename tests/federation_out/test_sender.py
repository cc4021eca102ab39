"""The per-destination federation sender against real peers on loopback (S2S "Transactions").

Each test runs a real room engine on a fresh database, the real signed federation client, and
one or more `FakePeer` TLS servers that verify our X-Matrix signature and record what they get.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import asyncpg

from federation.pdu import Event
from homeserver.remote.factory import RemoteServices
from homeserver.services.federation_queue import Backoff, QueueLimits
from homeserver.storage.federation_outbound import FederationOutboundStore, RetryState
from tests.federation_out.peer import (
    FakePeer,
    RecordingStore,
    event_id_of,
    remote_services,
    running_peer,
    running_sender,
    wait_until,
)
from tests.federation_out.sender_support import OUR_KEY, ids_of, retry_row, room_with, say, say_many
from tests.remote.support import LoopbackCertificate
from tests.services.pipeline_harness import ALICE, SERVER, Harness

# --- delivery ---------------------------------------------------------------------------------


async def test_message_in_a_room_with_a_remote_member_reaches_its_server_signed_by_us(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    async with running_sender(harness, remote, pool):
        room_id, _ = await room_with(harness, peer)
        message = await say(harness, room_id, "hello carol")

        await wait_until(lambda: message.event_id in peer.received_event_ids())

    transaction = next(a for a in peer.accepted if message.event_id in ids_of(a))
    assert transaction.body["origin"] == SERVER
    assert isinstance(transaction.body["origin_server_ts"], int)
    assert all(a.status == 200 for a in peer.attempts)  # every X-Matrix header verified
    [sent] = [pdu for pdu in transaction.body["pdus"] if event_id_of(pdu) == message.event_id]
    assert sent == dict(message.pdu)
    assert await pool.fetchval("SELECT count(*) FROM federation_outbox") == 0


async def test_pdus_travel_in_transactions_of_at_most_fifty(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    sent = await say_many(harness, room_id, 120)  # queued before the sender starts

    async with running_sender(harness, remote, pool):
        await wait_until(lambda: set(sent) <= set(peer.received_event_ids()))

    sizes = [len(a.body["pdus"]) for a in peer.accepted]
    assert max(sizes) == 50
    assert len(sizes) >= 3
    received = peer.received_event_ids()
    assert [e for e in received if e in set(sent)] == sent  # in order, each once
    assert len(received) == len(set(received))


async def test_an_event_that_overtakes_a_slower_commit_is_sent_once_the_stream_catches_up(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    async with running_sender(harness, remote, pool):
        # Another transaction holds a lower stream position (say, a remote event elsewhere).
        async with harness.tracker.allocate(harness.events.allocate_stream_positions, 1):
            message = await say(harness, room_id, "committed first, numbered later")
            await asyncio.sleep(0.2)
            # Sending it now could let the reader skip the lower position for good.
            assert message.event_id not in peer.received_event_ids()
        # The slower transaction ends without a local event (no hook of ours runs).
        await wait_until(lambda: message.event_id in peer.received_event_ids(), timeout_s=3)


async def test_events_from_other_servers_are_not_sent_again(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, cert: LoopbackCertificate
) -> None:
    async with (
        running_peer(cert, OUR_KEY) as first,
        running_peer(cert, OUR_KEY) as second,
        running_sender(harness, remote, pool),
    ):
        room_id, joins = await room_with(harness, first, second)
        state_before = dict(await harness.cache.get_current_state_ids(room_id))
        remote_message = first.event(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "from the first peer"},
            joins[-1],
            await _auth_for_message(harness, room_id, first),
        )
        await harness.pipeline.persist_remote_event(remote_message, state_before)
        ours = await say(harness, room_id, "after it")

        await wait_until(
            lambda: (
                ours.event_id in first.received_event_ids()
                and ours.event_id in second.received_event_ids()
            )
        )

    remote_ids = {remote_message.event_id, *(join.event_id for join in joins)}
    assert not remote_ids & set(first.received_event_ids())
    assert not remote_ids & set(second.received_event_ids())


async def _auth_for_message(h: Harness, room_id: str, peer: FakePeer) -> list[Event]:
    state = await h.cache.get_current_state_ids(room_id)
    keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", peer.user_id)]
    events = await h.cache.get_events([state[key] for key in keys])
    return [events[state[key]] for key in keys]


async def test_a_kicked_server_is_told_of_its_kick(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    async with running_sender(harness, remote, pool):
        room_id, _ = await room_with(harness, peer)
        kick = await harness.pipeline.create_local_event(
            room_id, "m.room.member", ALICE, {"membership": "leave"}, peer.user_id
        )
        await wait_until(lambda: kick.event_id in peer.received_event_ids())
        after = await say(harness, room_id, "carol is gone")
        await asyncio.sleep(0.2)

    assert after.event_id not in peer.received_event_ids()


# --- failures, backoff, catch-up --------------------------------------------------------------


async def test_failing_peer_gets_every_event_once_it_recovers_under_the_same_txn_id(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    peer.fail_next = 3
    async with running_sender(harness, remote, pool):
        first = await say(harness, room_id, "first")
        await wait_until(lambda: len(peer.attempts) >= 2)
        later = await say_many(harness, room_id, 60)  # queued while the peer fails
        await wait_until(lambda: set(later) <= set(peer.received_event_ids()))

    failed, retried = peer.attempts[:3], peer.attempts[3]
    assert [a.status for a in failed] == [500, 500, 500]
    # S2S: retry the same txnId (and the same transaction) until a 200.
    assert {a.txn_id for a in failed} == {retried.txn_id}
    assert all(a.body == retried.body for a in failed)
    assert retried.status == 200
    # Later transactions use new txnIds; nothing is missing or duplicated.
    txn_ids = [a.txn_id for a in peer.accepted]
    assert len(txn_ids) == len(set(txn_ids))
    received = peer.received_event_ids()
    assert {first.event_id, *later} <= set(received)
    assert len(received) == len(set(received))
    row = await retry_row(pool, peer.server_name)
    assert row is not None
    assert (row["retry_interval_ms"], row["failure_count"]) == (0, 0)
    assert row["last_successful_stream_ordering"] is not None


async def test_backoff_doubles_up_to_its_cap_and_survives_a_sender_restart(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    await peer.stop()  # connection refused from now on
    backoff = Backoff(initial_ms=40, multiplier=2.0, max_ms=300, jitter=0.0)
    store = RecordingStore(pool)
    async with running_sender(harness, remote, pool, backoff=backoff, store=store) as sender:
        missed = await say(harness, room_id, "while you were down")
        await wait_until(lambda: len(store.retry_states) >= 5)
        assert sender.is_backing_off(peer.server_name)
    states = [state for _, state in store.retry_states[:5]]
    assert [s.retry_interval_ms for s in states] == [40, 80, 160, 300, 300]
    assert [s.failure_count for s in states] == [1, 2, 3, 4, 5]
    # Each attempt waited out the previous interval.
    gaps = [b.retry_last_ts - a.retry_last_ts for a, b in itertools.pairwise(states)]
    assert all(gap >= a.retry_interval_ms for gap, a in zip(gaps, states, strict=False))
    row = await retry_row(pool, peer.server_name)
    assert row is not None and row["failure_count"] >= 5  # persisted

    # Make the persisted retry due well in the future: a restarted sender must respect it.
    due_ts = int(time.time() * 1000) + 700
    await pool.execute(
        "UPDATE federation_destinations SET retry_last_ts = $1, retry_interval_ms = 700"
        " WHERE destination = $2",
        due_ts - 700,
        peer.server_name,
    )
    await peer.start()
    async with running_sender(harness, remote, pool, backoff=backoff) as restarted:
        assert restarted.is_backing_off(peer.server_name)
        await wait_until(lambda: missed.event_id in peer.received_event_ids())
        first_delivery_ts = int(time.time() * 1000)
    assert first_delivery_ts >= due_ts
    row = await retry_row(pool, peer.server_name)
    assert row is not None and row["retry_interval_ms"] == 0


async def test_a_request_from_the_peer_ends_its_backoff_at_once(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    peer.fail_next = 1
    slow = Backoff(initial_ms=60_000, max_ms=60_000, jitter=0.0)
    async with running_sender(harness, remote, pool, backoff=slow) as sender:
        message = await say(harness, room_id, "are you there?")
        await wait_until(lambda: sender.is_backing_off(peer.server_name))
        await asyncio.sleep(0.1)
        assert message.event_id not in peer.received_event_ids()

        sender.on_inbound_request(peer.server_name)  # what FederationAuth calls

        await wait_until(lambda: message.event_id in peer.received_event_ids(), timeout_s=3)
        assert not sender.is_backing_off(peer.server_name)


async def test_a_hanging_peer_does_not_delay_delivery_to_a_live_one(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, cert: LoopbackCertificate
) -> None:
    async with (
        running_sender(harness, remote, pool),  # closed last: the dead peer answers first
        running_peer(cert, OUR_KEY) as dead,
        running_peer(cert, OUR_KEY) as live,
    ):
        dead.hang = True
        room_id, _ = await room_with(harness, dead, live)
        started = time.monotonic()
        messages = [await say(harness, room_id, f"hi {i}") for i in range(3)]
        await wait_until(
            lambda: {m.event_id for m in messages} <= set(live.received_event_ids()),
            timeout_s=2,
        )
        assert time.monotonic() - started < 2  # the client's timeout is 5 s
        await wait_until(lambda: dead.hung == 1, timeout_s=2)  # still waiting for its answer
        assert dead.attempts == []


async def test_our_own_restart_loses_nothing_committed_meanwhile(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    async with running_sender(harness, remote, pool):
        before = await say(harness, room_id, "before")
        await wait_until(lambda: before.event_id in peer.received_event_ids())
    meanwhile = await say_many(harness, room_id, 5)  # no sender running

    async with running_sender(harness, remote, pool):
        await wait_until(lambda: set(meanwhile) <= set(peer.received_event_ids()))
    assert peer.received_event_ids().count(before.event_id) == 1


async def test_catch_up_after_a_long_outage_starts_from_a_bounded_backlog(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    busy, _ = await room_with(harness, peer)
    quiet, _ = await room_with(harness, peer)
    quiet_last = await say(harness, quiet, "the only news here")
    busy_ids = await say_many(harness, busy, 20)
    # The peer has been failing for a while; its next attempt is due shortly.
    await FederationOutboundStore(pool).set_retry_state(
        peer.server_name, RetryState(int(time.time() * 1000), 300, 7)
    )
    async with running_sender(
        harness, remote, pool, limits=QueueLimits(max_backlog_pdus=5, max_backlog_edus=2)
    ) as sender:
        for i in range(4):
            await sender.send_edu(peer.server_name, "m.device_list_update", {"n": i})
        await wait_until(lambda: busy_ids[-1] in peer.received_event_ids())
        await wait_until(lambda: len(peer.received_edus()) >= 2)
        await asyncio.sleep(0.1)

    received = peer.received_event_ids()
    # The newest events, plus each room's newest; the peer pulls the rest itself.
    assert sorted(received) == sorted([quiet_last.event_id, *busy_ids[-5:]])
    assert [edu["content"]["n"] for edu in peer.received_edus()] == [2, 3]
    assert await pool.fetchval("SELECT count(*) FROM federation_outbox") == 0


# --- what is never sent -----------------------------------------------------------------------


async def test_nothing_is_sent_when_federation_is_disabled(
    tmp_path: Path, harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    disabled = remote_services(tmp_path, pool, OUR_KEY, enabled=False)
    try:
        async with running_sender(harness, disabled, pool, enabled=False) as sender:
            room_id, _ = await room_with(harness, peer)
            await say(harness, room_id, "nobody hears this")
            await sender.send_edu(peer.server_name, "m.direct_to_device", {"x": 1})
            await asyncio.sleep(0.3)
    finally:
        await disabled.close()
    assert peer.attempts == []
    assert await pool.fetchval("SELECT count(*) FROM federation_outbox") == 0
    assert await pool.fetchval("SELECT count(*) FROM federation_edu_outbox") == 0


async def test_denied_servers_and_ourselves_are_never_sent_to(
    tmp_path: Path, harness: Harness, pool: asyncpg.Pool, cert: LoopbackCertificate
) -> None:
    async with (
        running_peer(cert, OUR_KEY) as denied,
        running_peer(cert, OUR_KEY) as allowed,
    ):
        services = remote_services(tmp_path, pool, OUR_KEY, denied_servers=[denied.server_name])
        try:
            async with running_sender(harness, services, pool) as sender:
                room_id, _ = await room_with(harness, denied, allowed)
                message = await say(harness, room_id, "for the allowed only")
                await sender.send_edu(SERVER, "m.direct_to_device", {"x": 1})
                await wait_until(lambda: message.event_id in allowed.received_event_ids())
        finally:
            await services.close()
    assert denied.attempts == []
    destinations = await pool.fetch("SELECT DISTINCT destination FROM federation_outbox")
    assert destinations == []
    assert await FederationOutboundStore(pool).get_destinations_with_work() == set()
