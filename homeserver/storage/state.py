"""Room state storage: state groups (deltas against snapshots) and the state around each event.

Tables (schema/0002_rooms_events.sql): `state_groups`, `state_group_entries`,
`event_state_groups`. A state group is either a full snapshot (`prev_state_group` NULL) or the
changes on top of its `prev_state_group`; `delta_count` bounds the chain a read must walk.
Writes happen only inside the event pipeline's transaction (`homeserver/storage/events.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

StateKey = tuple[str, str]
StateIds = Mapping[StateKey, str]

# A new snapshot is taken when a delta chain would grow past this many links, so that
# reconstructing any state group reads at most this many groups.
MAX_DELTA_CHAIN: Final = 50
# From this many state group entries on, one write uses COPY rather than INSERTs.
COPY_THRESHOLD: Final = 200


@dataclass(frozen=True, slots=True)
class StateGroupInfo:
    state_group: int
    prev_state_group: int | None
    delta_count: int


@dataclass(frozen=True, slots=True)
class NewStateGroup:
    """A state group to write: the full state (snapshot) or the delta against `prev`.

    In a delta, an entry of None removes the key from the state of `prev_state_group`.
    """

    state_group: int
    room_id: str
    prev_state_group: int | None
    delta_count: int
    entries: Mapping[StateKey, str | None]

    @property
    def info(self) -> StateGroupInfo:
        return StateGroupInfo(self.state_group, self.prev_state_group, self.delta_count)


def plan_state_group(
    state_group: int,
    room_id: str,
    state: StateIds,
    base: StateGroupInfo | None,
    base_state: StateIds | None,
) -> NewStateGroup:
    """The cheapest way to store `state`: a delta on `base`, or a snapshot when there is no
    base or its chain is already `MAX_DELTA_CHAIN` long."""
    if base is None or base_state is None or base.delta_count + 1 > MAX_DELTA_CHAIN:
        return NewStateGroup(state_group, room_id, None, 0, dict(state))
    delta: dict[StateKey, str | None] = {
        key: event_id for key, event_id in state.items() if base_state.get(key) != event_id
    }
    for key in base_state:
        if key not in state:
            delta[key] = None
    return NewStateGroup(state_group, room_id, base.state_group, base.delta_count + 1, delta)


def apply_delta(base_state: StateIds, delta: Mapping[StateKey, str | None]) -> dict[StateKey, str]:
    state = dict(base_state)
    for key, event_id in delta.items():
        if event_id is None:
            state.pop(key, None)
        else:
            state[key] = event_id
    return state


# --- writes (inside the persist transaction) ----------------------------------------------


async def insert_state_groups(conn: asyncpg.Connection, groups: Sequence[NewStateGroup]) -> None:
    """Write state groups; a group's `prev_state_group` must be stored or earlier in `groups`."""
    if not groups:
        return
    await conn.executemany(
        "INSERT INTO state_groups (state_group, room_id, prev_state_group, delta_count)"
        " VALUES ($1, $2, $3, $4)",
        [(g.state_group, g.room_id, g.prev_state_group, g.delta_count) for g in groups],
    )
    entries = [
        (g.state_group, key[0], key[1], event_id)
        for g in groups
        for key, event_id in g.entries.items()
    ]
    if len(entries) >= COPY_THRESHOLD:
        # A snapshot of a big room (a remote join's state): COPY costs PostgreSQL about half
        # of what as many INSERTs do.
        await conn.copy_records_to_table(
            "state_group_entries",
            records=entries,
            columns=("state_group", "type", "state_key", "event_id"),
        )
    elif entries:
        await conn.executemany(
            "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
            " VALUES ($1, $2, $3, $4)",
            entries,
        )


async def insert_event_state_groups(
    conn: asyncpg.Connection, rows: Iterable[tuple[str, int, int]]
) -> None:
    """`(event_id, state_group_after, state_group_before)` for each non-outlier event."""
    rows = list(rows)
    if rows:
        await conn.executemany(
            "INSERT INTO event_state_groups (event_id, state_group, state_group_before)"
            " VALUES ($1, $2, $3)",
            rows,
        )


# --- reads -------------------------------------------------------------------------------

_CHAIN_STATE: Final = """
WITH RECURSIVE chain (state_group, prev_state_group, distance) AS (
    SELECT state_group, prev_state_group, 0 FROM state_groups WHERE state_group = $1
    UNION ALL
    SELECT g.state_group, g.prev_state_group, c.distance + 1
    FROM state_groups g JOIN chain c ON g.state_group = c.prev_state_group
)
SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_id
FROM chain c JOIN state_group_entries e ON e.state_group = c.state_group
ORDER BY e.type, e.state_key, c.distance
"""


class StateStore:
    """Reads of state groups and of the state around events."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_state_group_info(self, state_group: int) -> StateGroupInfo | None:
        row = await self._pool.fetchrow(
            "SELECT prev_state_group, delta_count FROM state_groups WHERE state_group = $1",
            state_group,
        )
        if row is None:
            return None
        return StateGroupInfo(state_group, row["prev_state_group"], row["delta_count"])

    async def get_state_group_state(self, state_group: int) -> dict[StateKey, str]:
        """The full state of a group, walking its delta chain down to the snapshot."""
        rows = await self._pool.fetch(_CHAIN_STATE, state_group)
        return {
            (row["type"], row["state_key"]): row["event_id"]
            for row in rows
            if row["event_id"] is not None
        }

    async def get_state_group_delta(
        self, state_group: int
    ) -> tuple[StateGroupInfo, dict[StateKey, str | None]] | None:
        """The group's own entries (all of them for a snapshot), with its chain info."""
        info = await self.get_state_group_info(state_group)
        if info is None:
            return None
        rows = await self._pool.fetch(
            "SELECT type, state_key, event_id FROM state_group_entries WHERE state_group = $1",
            state_group,
        )
        return info, {(row["type"], row["state_key"]): row["event_id"] for row in rows}

    async def get_state_groups_for_events(
        self, event_ids: Iterable[str]
    ) -> dict[str, tuple[int, int]]:
        """`event_id → (state group after, state group before)` for the events that have them
        (outliers and unknown events are absent)."""
        rows = await self._pool.fetch(
            "SELECT event_id, state_group, state_group_before FROM event_state_groups"
            " WHERE event_id = ANY($1::text[])",
            list(event_ids),
        )
        return {row["event_id"]: (row["state_group"], row["state_group_before"]) for row in rows}
