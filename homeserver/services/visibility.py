"""History visibility: which events of a room a user may see (C-S "Room History Visibility").

The rules depend on the state of the room *at each event*: its `m.room.history_visibility` and
the user's membership then. Server behaviour, in order:

1. `world_readable` at the event: allow.
2. The user's membership at the event is `join`: allow.
3. `shared`, and the user joined the room at any point after the event: allow.
4. `invited`, and the user's membership at the event is `invite`: allow.
5. Otherwise deny.

"At the event" is the state before it. For `m.room.history_visibility` events, and for the
user's own `m.room.member` events, the state after the event counts too (either allows). An
unset or unknown visibility is `shared`. After leaving, a user keeps what they could see before
and sees nothing sent later: rule 3 needs a join *after* the event, rule 2 a join *at* it.

Every read path (/messages, /context, /event, /relations, /sync …) runs its events through
`HistoryVisibility.check_events` / `filter_events` (or, by stream position, `filter_visible`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from federation.pdu import Event
from federation.room_state import HISTORY_VISIBILITY, MEMBER
from homeserver.services.state import RoomStateCache
from homeserver.storage.event_rows import EventRow
from homeserver.storage.room_reads import RoomReadsStore
from homeserver.storage.state import StateKey

WORLD_READABLE: Final = "world_readable"
SHARED: Final = "shared"
INVITED: Final = "invited"
JOINED: Final = "joined"
KNOWN_VISIBILITIES: Final = frozenset({WORLD_READABLE, SHARED, INVITED, JOINED})

@dataclass(frozen=True, slots=True)
class VisibilityAt:
    """What the rules read from the room state at one point."""

    history_visibility: str
    membership: str  # the user's; "leave" when they have no member event


@dataclass(frozen=True, slots=True)
class EventVisibility:
    visible: bool
    # The user's membership at the event, after it (`unsigned.membership`).
    membership: str


def allowed_at(point: VisibilityAt, joined_later: bool) -> bool:
    """The spec's rules 1–5 for one state of the room."""
    visibility = point.history_visibility
    if visibility == WORLD_READABLE:
        return True
    if point.membership == "join":
        return True
    if visibility == SHARED and joined_later:
        return True
    return visibility == INVITED and point.membership == "invite"


def both_sides_count(event: Event, user_id: str) -> bool:
    """History visibility events and the user's own member events are judged on the state
    before *or* after them."""
    return event.type == HISTORY_VISIBILITY or (
        event.type == MEMBER and event.state_key == user_id
    )


def judge(
    points: tuple[VisibilityAt | None, VisibilityAt | None] | None, joined_later: bool
) -> EventVisibility:
    """The verdict from the state before (and, where it counts, after) an event."""
    sides = [p for p in points or () if p is not None]
    visible = any(allowed_at(p, joined_later) for p in sides)
    # Membership "including any changes caused by the event" (client_event.yaml).
    return EventVisibility(visible, sides[-1].membership if sides else "leave")


class VisibilityLoader:
    """Reads, from the state cache, what the rules need about the state around events."""

    def __init__(self, cache: RoomStateCache) -> None:
        self._cache = cache

    async def points(
        self, user_id: str, events: Sequence[Event]
    ) -> dict[str, tuple[VisibilityAt | None, VisibilityAt | None]]:
        """`event_id → (state before, state after)` as the rules read it; "after" only where
        it counts (`both_sides_count`). Events without stored state are absent (denied)."""
        groups = await self._cache.get_state_groups_for_events(e.event_id for e in events)
        needed: set[int] = set()
        for event in events:
            pair = groups.get(event.event_id)
            if pair is not None:
                after, before = pair
                needed.add(before)
                if both_sides_count(event, user_id):
                    needed.add(after)
        by_group = await self._points_for_groups(needed, user_id)
        result: dict[str, tuple[VisibilityAt | None, VisibilityAt | None]] = {}
        for event in events:
            pair = groups.get(event.event_id)
            if pair is None:
                continue
            after, before = pair
            after_point = by_group[after] if both_sides_count(event, user_id) else None
            result[event.event_id] = (by_group[before], after_point)
        return result

    async def _points_for_groups(
        self, state_groups: Iterable[int], user_id: str
    ) -> dict[int, VisibilityAt]:
        keys: list[StateKey] = [(HISTORY_VISIBILITY, ""), (MEMBER, user_id)]
        id_maps: dict[int, Mapping[StateKey, str]] = {}
        for group in state_groups:
            id_maps[group] = await self._cache.get_state_group_state(group)
        wanted = {m[k] for m in id_maps.values() for k in keys if k in m}
        events = await self._cache.get_events(wanted)
        points: dict[int, VisibilityAt] = {}
        for group, state in id_maps.items():
            hv_event = events.get(state.get((HISTORY_VISIBILITY, ""), ""))
            member_event = events.get(state.get((MEMBER, user_id), ""))
            visibility = None if hv_event is None else hv_event.content.get("history_visibility")
            if visibility not in KNOWN_VISIBILITIES:
                visibility = SHARED
            membership = None if member_event is None else member_event.membership
            points[group] = VisibilityAt(str(visibility), membership or "leave")
        return points


class HistoryVisibility:
    """Applies the history visibility rules to stored events for one user at a time."""

    def __init__(self, cache: RoomStateCache, store: RoomReadsStore) -> None:
        self._loader = VisibilityLoader(cache)
        self._store = store

    async def filter_events(self, user_id: str, rows: Sequence[EventRow]) -> list[EventRow]:
        """The rows `user_id` may see, in their original order (rows of any rooms)."""
        verdicts = await self.check_events(user_id, rows)
        return [row for row in rows if verdicts[row.event.event_id].visible]

    async def check_events(
        self, user_id: str, rows: Sequence[EventRow]
    ) -> dict[str, EventVisibility]:
        """`event_id → (may see, membership at the event)` for each row. "Joined later"
        compares topological keys `(depth, stream_ordering)`."""
        if not rows:
            return {}
        room_ids = {row.event.room_id for row in rows}
        join_keys = await self._store.get_latest_join_keys(room_ids, user_id)
        points = await self._loader.points(user_id, [row.event for row in rows])
        verdicts: dict[str, EventVisibility] = {}
        for row in rows:
            event = row.event
            join_key = join_keys.get(event.room_id)
            joined_later = join_key is not None and join_key > (event.depth, row.stream_ordering)
            verdicts[event.event_id] = judge(points.get(event.event_id), joined_later)
        return verdicts


async def filter_visible(
    user_id: str,
    events: Sequence[tuple[Event, int]],
    loader: VisibilityLoader,
    get_latest_join: Callable[[str, str], Awaitable[int | None]],
) -> list[tuple[Event, int]]:
    """`(event, stream_ordering)` pairs the user may see, in order; "joined later" compares
    stream positions with `get_latest_join(room_id, user_id)` (the /sync timeline's order)."""
    if not events:
        return []
    joins: dict[str, int | None] = {}
    for event, _ in events:
        if event.room_id not in joins:
            joins[event.room_id] = await get_latest_join(event.room_id, user_id)
    points = await loader.points(user_id, [event for event, _ in events])
    kept: list[tuple[Event, int]] = []
    for event, position in events:
        join = joins[event.room_id]
        if judge(points.get(event.event_id), join is not None and join > position).visible:
            kept.append((event, position))
    return kept
