"""Big state groups (a remote join's snapshot) are written with COPY; they read back exactly."""

from __future__ import annotations

import asyncpg

from homeserver.storage.state import (
    COPY_THRESHOLD,
    StateStore,
    insert_state_groups,
    plan_state_group,
)
from tests.services.pipeline_harness import create_room, make_harness


async def test_a_big_snapshot_and_a_big_delta_with_removals_read_back_exactly(
    pool: asyncpg.Pool,
) -> None:
    h = await make_harness(pool)
    room_id, created = await create_room(h)
    base = {e.state_tuple: e.event_id for e in created}
    base |= {("org.example.state", f"k{n}"): created[0].event_id for n in range(COPY_THRESHOLD)}
    changed = {k: v for k, v in base.items() if not k[1].startswith("k1")}
    changed |= {("org.example.other", f"o{n}"): created[1].event_id for n in range(COPY_THRESHOLD)}
    snapshot = plan_state_group(2001, room_id, base, None, None)
    delta = plan_state_group(2002, room_id, changed, snapshot.info, base)
    assert len(snapshot.entries) >= COPY_THRESHOLD
    assert None in delta.entries.values()
    async with pool.acquire() as conn, conn.transaction():
        await insert_state_groups(conn, [snapshot, delta])

    store = StateStore(pool)
    assert await store.get_state_group_state(2001) == base
    assert await store.get_state_group_state(2002) == changed
