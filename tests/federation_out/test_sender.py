"""The per-destination federation sender against real peers on loopback (S2S "Transactions").

Each test runs a real room engine on a fresh database, the real signed federation client, and
one or more `FakePeer` TLS servers that verify our X-Matrix signature and record what they get.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import asyncpg
import pytest

from federation.pdu import Event
from federation.signing import generate_signing_key
from homeserver.remote.factory import RemoteServices
from homeserver.services.federation_ephemeral import EphemeralForwarder
from homeserver.services.federation_queue import Backoff, QueueLimits
from homeserver.services.receipts import READ
from homeserver.storage.federation_outbound import FederationOutboundStore, RetryState
from homeserver.storage.sync_data import ReceiptRow
from tests.federation_out.peer import (
    Attempt,
    FakePeer,
    RecordingStore,
    event_id_of,
    remote_services,
    running_peer,
    running_sender,
    wait_until,
)
from tests.remote.support import LoopbackCertificate, make_certificate
from tests.services.pipeline_harness import ALICE, SERVER, Harness, create_room, make_harness

OUR_KEY = generate_signing_key("ours")


@pytest.fixture
def cert(tmp_path: Path) -> LoopbackCertificate:
    return make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])


@pytest.fixture
async def harness(pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    h = await make_harness(pool, signing_key=OUR_KEY)
    yield h
    await h.pipeline.close()


@pytest.fixture
async def remote(tmp_path: Path, pool: asyncpg.Pool) -> AsyncIterator[RemoteServices]:
    services = remote_services(tmp_path, pool, OUR_KEY)
    yield services
    await services.close()


@pytest.fixture
async def peer(cert: LoopbackCertificate) -> AsyncIterator[FakePeer]:
    async with running_peer(cert, OUR_KEY) as fake:
        yield fake


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


# --- delivery ---------------------------------------------------------------------------------


async def test_message_in_a_room_with_a_remote_member_reaches_its_server_signed_by_us(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    async with running_sender(harness, remote, pool):
        room_id, _ = await room_with(harness, peer)
        message = await say(harness, room_id, "hello carol")

        await wait_until(lambda: message.event_id in peer.received_event_ids())

    transaction = next(a for a in peer.accepted if message.event_id in _ids(a))
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


async def test_a_restart_retries_the_transaction_in_flight_with_its_txn_id_and_content(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    async with running_sender(harness, remote, pool):
        await wait_until(lambda: len(peer.accepted) >= 1)  # the room's history so far
        peer.fail_next = 1_000  # 500 until told otherwise
        first = await say(harness, room_id, "in flight when we stop")
        await wait_until(lambda: any(a.status == 500 for a in peer.attempts))
    [in_flight] = [a for a in peer.attempts if a.status == 500][:1]
    assert first.event_id in _ids(in_flight)
    peer.attempts.clear()
    # Changes after the attempt must not alter what the retry carries: a new event, and the
    # event's stored JSON (as a redaction would rewrite it).
    meanwhile = await say(harness, room_id, "after the stop")
    await pool.execute(
        "UPDATE events SET json = replace(json, 'in flight', 'REWRITTEN') WHERE event_id = $1",
        first.event_id,
    )
    await pool.execute("UPDATE federation_destinations SET retry_interval_ms = 0")
    peer.fail_next = 0

    async with running_sender(harness, remote, pool):
        await wait_until(lambda: meanwhile.event_id in peer.received_event_ids())

    retried = peer.accepted[0]
    assert (retried.txn_id, retried.body) == (in_flight.txn_id, in_flight.body)
    assert meanwhile.event_id not in _ids(retried)
    later_txn_ids = {a.txn_id for a in peer.accepted[1:]}
    assert later_txn_ids and in_flight.txn_id not in later_txn_ids
    assert peer.received_event_ids().count(first.event_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM federation_inflight_transactions") == 0


def _ids(attempt: Attempt) -> list[str]:
    return [event_id_of(pdu) for pdu in attempt.body["pdus"]]


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


# --- EDUs -------------------------------------------------------------------------------------


async def test_edus_reach_the_peer_and_durable_ones_survive_an_outage(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    to_device = {
        "sender": ALICE,
        "type": "m.room_key_request",
        "message_id": "m1",
        "messages": {peer.user_id: {"*": {"action": "cancel"}}},
    }
    async with running_sender(harness, remote, pool) as sender:
        room_id, _ = await room_with(harness, peer)
        typing = {"room_id": room_id, "user_id": ALICE, "typing": True}
        await sender.send_edu_to_room(room_id, "m.typing", typing)
        await wait_until(lambda: len(peer.received_edus()) == 1)
        assert peer.received_edus() == [{"edu_type": "m.typing", "content": typing}]

        peer.fail_next = 2
        await sender.send_edu([peer.server_name, SERVER], "m.direct_to_device", to_device)
        await wait_until(lambda: sender.is_backing_off(peer.server_name))
        # Typing is worthless after an outage: not queued for a server we back off from.
        await sender.send_edu(peer.server_name, "m.typing", {**typing, "typing": False})
        await wait_until(lambda: len(peer.received_edus()) == 2)
        await asyncio.sleep(0.3)

    assert peer.received_edus()[1] == {"edu_type": "m.direct_to_device", "content": to_device}
    assert len(peer.received_edus()) == 2
    assert await pool.fetchval("SELECT count(*) FROM federation_edu_outbox") == 0


class GatedRoutingStore(FederationOutboundStore):
    """The real store, whose room-server lookups wait until `open` is set."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.open = asyncio.Event()

    async def get_joined_servers(self, room_ids: Collection[str]) -> dict[str, set[str]]:
        await self.open.wait()
        return await super().get_joined_servers(room_ids)


async def test_typing_and_receipts_are_forwarded_after_the_client_is_answered(
    harness: Harness, remote: RemoteServices, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    room_id, _ = await room_with(harness, peer)
    store = GatedRoutingStore(pool)
    async with running_sender(harness, remote, pool, store=store) as sender:
        forwarder = EphemeralForwarder(sender, SERVER)
        receipt = ReceiptRow(room_id, READ, ALICE, "", "$read", 1234, 1)
        # The listeners return while routing (a database lookup) cannot even start.
        await asyncio.wait_for(forwarder.on_typing(room_id, ALICE, True, 30_000), timeout=1)
        await asyncio.wait_for(forwarder.on_receipt(receipt), timeout=1)
        assert peer.received_edus() == []

        store.open.set()
        await wait_until(lambda: len(peer.received_edus()) == 2)

    typing_edu, receipt_edu = peer.received_edus()
    assert typing_edu == {
        "edu_type": "m.typing",
        "content": {"room_id": room_id, "user_id": ALICE, "typing": True},
    }
    assert receipt_edu["edu_type"] == "m.receipt"
    assert receipt_edu["content"][room_id][READ][ALICE]["event_ids"] == ["$read"]


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
