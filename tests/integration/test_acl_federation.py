"""Blocking servers (issue 5 "Tests"): a room's `m.room.server_acl` (S2S "Server Access
Control Lists (ACLs)") and the operator's `federation.denied_servers` (CONTRACT).

Room ACLs match server names without their port, so the three servers here listen on
distinct loopback addresses: A on 127.0.0.1, B on 127.0.0.2, C on 127.0.0.3.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from homeserver.remote.errors import RemoteError
from tests.integration.cluster import Cluster, cluster
from tests.integration.rooms import (
    create_public_room,
    eventually,
    join_via,
    message_bodies,
    put_state,
    q,
    send_text,
    state_of,
    wait_for_same_state,
    wait_until_seen,
)
from tests.integration.test_two_servers import Server, User

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


@pytest.fixture
async def three_hosts(
    tmp_path: Path, pg_admin_dsn: str, _migrated_template: str
) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, pg_admin_dsn, _migrated_template, 3, hosts=HOSTS) as running:
        yield running


def _a_denies_c(index: int, names: list[str]) -> Mapping[str, Any]:
    """A refuses C; it learns C's keys (to check C's events B relays) from B as a notary."""
    if index != 0:
        return {}
    return {"denied_servers": [names[2]], "trusted_key_servers": [{"server_name": names[1]}]}


@pytest.fixture
async def a_denies_c(
    tmp_path: Path, pg_admin_dsn: str, _migrated_template: str
) -> AsyncIterator[Cluster]:
    async with cluster(
        tmp_path, pg_admin_dsn, _migrated_template, 3, federation=_a_denies_c, hosts=HOSTS
    ) as running:
        yield running


async def _send(user: User, room_id: str, txn: str, body: str) -> str:
    status, reply = await user.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": body},
    )
    assert status == 200, reply
    return str(reply["event_id"])


async def _outbox_empty(server: Server) -> bool:
    count = await server.deps.pool.fetchval("SELECT count(*) FROM federation_outbox")
    return int(count) == 0


async def _has_event(server: Server, event_id: str) -> bool:
    found = await server.deps.pool.fetchval("SELECT 1 FROM events WHERE event_id = $1", event_id)
    return found is not None


async def test_a_room_acl_denying_c_stops_its_events_at_a_and_b(three_hosts: Cluster) -> None:
    a, b, c = three_hosts.servers
    alice, bob, carol = (
        await a.register("alice"),
        await b.register("bob"),
        await c.register("carol"),
    )
    room_id = await create_public_room(alice)
    await join_via(bob, room_id, a.name)
    await join_via(carol, room_id, a.name)
    await wait_for_same_state(room_id, alice, bob, carol)
    await send_text(carol, room_id, "c1", "before the acl")
    await wait_until_seen(alice, room_id, "before the acl")
    await wait_until_seen(bob, room_id, "before the acl")

    acl = {"allow": ["*"], "deny": ["127.0.0.3"], "allow_ip_literals": True}
    acl_id = await put_state(alice, room_id, "m.room.server_acl", acl)

    async def b_has_the_acl() -> bool:
        return (await state_of(bob, room_id)).get(("m.room.server_acl", "")) == acl_id

    await eventually(b_has_the_acl, 15.0)

    blocked = await _send(carol, room_id, "c2", "after the acl")
    await eventually(lambda: _outbox_empty(c), 15.0)  # A and B have answered C
    for server, user in ((a, alice), (b, bob)):
        assert not await _has_event(server, blocked), server.name
        assert "after the acl" not in await message_bodies(user, room_id)

    # Every endpoint about the room refuses C at A (S2S "Server ACLs").
    assert c.deps.remote is not None
    with pytest.raises(RemoteError) as refused:
        await c.deps.remote.client.get_json(
            a.name, f"/_matrix/federation/v1/state_ids/{q(room_id)}", {"event_id": acl_id}
        )
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")

    # A and B still talk.
    await send_text(bob, room_id, "b1", "still here")
    await wait_until_seen(alice, room_id, "still here")


async def test_denied_servers_refuses_c_requests_and_a_sends_nothing_to_c(
    a_denies_c: Cluster,
) -> None:
    a, b, c = a_denies_c.servers
    alice, bob, carol = (
        await a.register("alice"),
        await b.register("bob"),
        await c.register("carol"),
    )
    # A room of B that C joins first, so A learns from B that C is in it when alice joins.
    room_id = await create_public_room(bob)
    await join_via(carol, room_id, b.name)
    await join_via(alice, room_id, b.name)
    assert ("m.room.member", carol.user_id) in await state_of(alice, room_id)

    # A refuses C's signed requests: 403 before anything else (CONTRACT).
    assert c.deps.remote is not None
    with pytest.raises(RemoteError) as refused:
        await c.deps.remote.client.get_json(
            a.name, "/_matrix/federation/v1/query/profile", {"user_id": alice.user_id}
        )
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")

    # alice's message goes to B, never to C.
    await send_text(alice, room_id, "a1", "from alice")
    await wait_until_seen(bob, room_id, "from alice")
    await send_text(bob, room_id, "b1", "from bob")
    await wait_until_seen(carol, room_id, "from bob")  # C does receive transactions, from B
    await eventually(lambda: _outbox_empty(a), 15.0)
    origins = await c.deps.pool.fetch(
        "SELECT DISTINCT origin FROM federation_received_transactions"
    )
    assert a.name not in {row["origin"] for row in origins}
    assert b.name in {row["origin"] for row in origins}

    # carol's message reaches B; A refuses C's transaction, so it is not stored there.
    carols = await _send(carol, room_id, "c1", "from carol")
    await wait_until_seen(bob, room_id, "from carol")
    await eventually(lambda: _outbox_empty(c), 15.0)
    assert not await _has_event(a, carols)
