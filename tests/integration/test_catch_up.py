"""A server down for a while, then caught up with nothing lost (issue 5 "Tests"; S2S
"Transactions", GUIDE.md "Outbound federation"): while B is stopped, A and C queue what B
missed and retry with backoff; once B is back on the same database and port, bob's /messages
has every message in order and B's current state equals A's.
"""

from __future__ import annotations

from tests.integration.cluster import ThreeServers
from tests.integration.rooms import (
    create_public_room,
    eventually,
    get_state_content,
    join_via,
    message_bodies,
    put_state,
    send_text,
    state_of,
    wait_for_same_state,
    wait_until_seen,
)
from tests.integration.test_two_servers import Server

MISSED = 8  # messages each of alice and carol send while B is down


async def test_a_stopped_server_gets_every_event_it_missed_once_it_is_back(
    three_servers: ThreeServers,
) -> None:
    a, b, c = three_servers.a, three_servers.b, three_servers.c
    alice, bob, carol = (
        await a.register("alice"),
        await b.register("bob"),
        await c.register("carol"),
    )
    room_id = await create_public_room(alice, name="Catch-up")
    await join_via(bob, room_id, a.name)
    await join_via(carol, room_id, a.name)
    await wait_for_same_state(room_id, alice, bob, carol)
    await send_text(alice, room_id, "before", "before the outage")
    await wait_until_seen(bob, room_id, "before the outage")

    await three_servers.cluster.stop(b)

    from_alice = [f"alice {n}" for n in range(1, MISSED + 1)]
    from_carol = [f"carol {n}" for n in range(1, MISSED + 1)]
    for n, body in enumerate(from_alice):
        await send_text(alice, room_id, f"a{n}", body)
    await wait_until_seen(carol, room_id, *from_alice)  # one line of history, not a fork
    for n, body in enumerate(from_carol):
        await send_text(carol, room_id, f"c{n}", body)
    await put_state(alice, room_id, "m.room.topic", {"topic": "changed while B was down"})
    await wait_for_same_state(room_id, alice, carol)
    await wait_until_seen(alice, room_id, *from_carol)
    # A and C have both failed to reach B and hold what it missed.
    for sender in (a, c):
        assert sender.deps.federation_sender is not None
        assert sender.deps.federation_sender.is_backing_off(b.name)
        assert await _queued_for(sender, b.name) > 0

    await three_servers.cluster.restart(b)

    expected = await message_bodies(alice, room_id)
    assert expected == ["before the outage", *from_alice, *from_carol]

    async def caught_up() -> bool:
        return await message_bodies(bob, room_id) == expected

    await eventually(caught_up, 20.0)
    state = await wait_for_same_state(room_id, alice, bob, carol)
    assert state == await state_of(alice, room_id)
    topic = await get_state_content(bob, room_id, "m.room.topic")
    assert topic == {"topic": "changed while B was down"}
    # Nothing is left queued for B, and B takes part as before.
    for sender in (a, c):
        await eventually(lambda s=sender: _nothing_queued_for(s, b.name), 10.0)
    await send_text(bob, room_id, "after", "bob is back")
    await wait_until_seen(alice, room_id, "bob is back")
    await wait_until_seen(carol, room_id, "bob is back")


async def _queued_for(server: Server, destination: str) -> int:
    return int(
        await server.deps.pool.fetchval(
            "SELECT count(*) FROM federation_outbox WHERE destination = $1", destination
        )
    )


async def _nothing_queued_for(server: Server, destination: str) -> bool:
    return await _queued_for(server, destination) == 0
