"""The sender across restarts and its EDUs (S2S "Transactions", "EDUs"): a transaction in
flight is retried with its txnId and content after a restart; durable EDUs survive an outage;
typing and receipts are forwarded off the client's request."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import asyncpg

from homeserver.remote.factory import RemoteServices
from homeserver.services.federation_ephemeral import EphemeralForwarder
from homeserver.services.receipts import READ
from homeserver.storage.federation_outbound import FederationOutboundStore
from homeserver.storage.sync_data import ReceiptRow
from tests.federation_out.peer import FakePeer, running_sender, wait_until
from tests.federation_out.sender_support import ids_of, room_with, say
from tests.services.pipeline_harness import ALICE, SERVER, Harness


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
    assert first.event_id in ids_of(in_flight)
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
    assert meanwhile.event_id not in ids_of(retried)
    later_txn_ids = {a.txn_id for a in peer.accepted[1:]}
    assert later_txn_ids and in_flight.txn_id not in later_txn_ids
    assert peer.received_event_ids().count(first.event_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM federation_inflight_transactions") == 0


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
