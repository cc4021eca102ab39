"""The resident server sends on the memberships it accepts (S2S "Joining Rooms", "Knocking
upon a room"): A hosts a room that B is in; C, which refuses to talk to B
(`federation.denied_servers`), joins or knocks through A, and B still learns of it — from A.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, cluster
from tests.integration.rooms import (
    DELIVERY_TIMEOUT_S,
    create_public_room,
    eventually,
    join_via,
    q,
    state_of,
)
from tests.integration.test_two_servers import User


def _c_denies_b(index: int, names: list[str]) -> Mapping[str, Any]:
    """C neither sends to B nor answers it: whatever B learns of C's users came from A."""
    return {"denied_servers": [names[1]]} if index == 2 else {}


@pytest.fixture
async def c_denies_b(
    tmp_path: Path, pg_admin_dsn: str, _migrated_template: str
) -> AsyncIterator[Cluster]:
    async with cluster(
        tmp_path, pg_admin_dsn, _migrated_template, 3, federation=_c_denies_b
    ) as running:
        yield running


async def _member_event_id(user: User, room_id: str, member: str) -> str | None:
    return (await state_of(user, room_id)).get(("m.room.member", member))


async def _membership_at(user: User, room_id: str, member: str) -> str | None:
    status, content = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(member)}"
    )
    return content.get("membership") if status == 200 else None


async def test_a_relays_a_join_it_accepted_from_c_to_b(c_denies_b: Cluster) -> None:
    a, b, c = c_denies_b.servers
    alice = await a.register("alice")
    bob = await b.register("bob")
    carol = await c.register("carol")
    room_id = await create_public_room(alice)
    await join_via(bob, room_id, a.name)

    await join_via(carol, room_id, a.name)
    join_id = await _member_event_id(alice, room_id, carol.user_id)
    assert join_id is not None

    async def b_has_carols_join() -> bool:
        return await _member_event_id(bob, room_id, carol.user_id) == join_id

    # Nothing else happens in the room: only A's relay can bring B carol's join.
    await eventually(b_has_carols_join, DELIVERY_TIMEOUT_S)
    assert await _membership_at(bob, room_id, carol.user_id) == "join"
    outbox = await c.deps.pool.fetchval(
        "SELECT count(*) FROM federation_outbox WHERE destination = $1", b.name
    )
    assert outbox == 0  # C never queued anything for B


async def test_a_relays_a_knock_it_accepted_from_c_to_b(c_denies_b: Cluster) -> None:
    a, b, c = c_denies_b.servers
    alice = await a.register("alice")
    bob = await b.register("bob")
    carol = await c.register("carol")
    room_id = await create_public_room(alice, room_version="10")
    await join_via(bob, room_id, a.name)
    status, reply = await alice.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.join_rules/",
        {"join_rule": "knock"},
    )
    assert status == 200, reply
    rules_id = reply["event_id"]

    async def b_has_knock_rule() -> bool:
        return (await state_of(bob, room_id)).get(("m.room.join_rules", "")) == rules_id

    await eventually(b_has_knock_rule, DELIVERY_TIMEOUT_S)

    status, reply = await carol.call(
        "POST", f"/_matrix/client/v3/knock/{q(room_id)}?server_name={q(a.name)}", {}
    )
    assert status == 200, reply

    async def b_sees_the_knock() -> bool:
        return await _membership_at(bob, room_id, carol.user_id) == "knock"

    await eventually(b_sees_the_knock, DELIVERY_TIMEOUT_S)
