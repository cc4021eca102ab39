"""The event orderings of state resolution v2 and v2.1.

Spec: `rooms/fragments/v2-state-res.md` (and `rooms/v12.md`), "Definitions": *reverse topological
power ordering* and *mainline ordering*. Both need to look events up by ID and read the power level
of a sender "when looking at their auth events"; `EventGraph` does that once per event and caches
it, so sorting a large conflicted set stays O(n log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Container, Iterable, Mapping
from typing import Final

from federation.pdu import Event
from federation.room_state import (
    CREATE,
    POWER_LEVELS,
    PowerLevel,
    StateKey,
    user_power_level,
)
from federation.room_versions import RoomVersion

# The mainline position of an event whose power-levels chain never meets the mainline.
MAINLINE_INFINITY: Final = float("inf")


class StateResolutionError(ValueError):
    """The input to state resolution is unusable: a needed event is missing or malformed."""


class EventGraph:
    """The events state resolution may look at, their auth edges and cached per-event facts.

    `rejected_event_ids` are events rejected on receipt; they are never used as auth events in
    the iterative auth checks (v2 "Rejected events").
    """

    def __init__(
        self,
        room_version: RoomVersion,
        event_map: Mapping[str, Event],
        rejected_event_ids: Container[str] = frozenset(),
    ) -> None:
        self.room_version = room_version
        self.event_map = event_map
        self.rejected_event_ids = rejected_event_ids
        self._power_levels_parent: dict[str, str | None] = {}
        self._sender_power: dict[str, PowerLevel] = {}
        self._create_of_room: dict[str, Event | None] = {}

    def get(self, event_id: str) -> Event:
        event = self.event_map.get(event_id)
        if event is None:
            raise StateResolutionError(f"event {event_id} is needed but not in the event map")
        return event

    def get_state_event(self, event_id: str) -> Event:
        event = self.get(event_id)
        if event.state_key is None:
            raise StateResolutionError(f"event {event_id} is in state but is not a state event")
        return event

    def is_rejected(self, event_id: str) -> bool:
        return event_id in self.rejected_event_ids

    def power_levels_parent(self, event: Event) -> str | None:
        """The m.room.power_levels event among `event`'s auth events, if any (cached)."""
        if event.event_id in self._power_levels_parent:
            return self._power_levels_parent[event.event_id]
        parent: str | None = None
        for auth_id in event.auth_event_ids:
            auth_event = self.get(auth_id)
            if auth_event.type == POWER_LEVELS and auth_event.state_key == "":
                parent = auth_id
                break
        self._power_levels_parent[event.event_id] = parent
        return parent

    def create_event_of_room(self, room_id: str) -> Event | None:
        """v12: the m.room.create event is implied by the room ID (`!` + its event ID's hash)."""
        if room_id not in self._create_of_room:
            create = self.event_map.get("$" + room_id[1:]) if room_id.startswith("!") else None
            if create is not None and create.type != CREATE:
                create = None
            self._create_of_room[room_id] = create
        return self._create_of_room[room_id]

    def auth_events_state(
        self, event: Event, *, include_rejected: bool = False
    ) -> dict[StateKey, Event]:
        """`event`'s auth events (by default only those not rejected), by `(type, state_key)`.

        In v12 the create event is never listed in `auth_events`; it is added from the room ID.
        """
        state: dict[StateKey, Event] = {}
        for auth_id in event.auth_event_ids:
            if not include_rejected and self.is_rejected(auth_id):
                continue
            auth_event = self.get(auth_id)
            if auth_event.state_key is not None:
                state[(auth_event.type, auth_event.state_key)] = auth_event
        if self.room_version.room_id_from_create_event and (CREATE, "") not in state:
            create = self.create_event_of_room(event.room_id)
            if create is not None:
                state[(CREATE, "")] = create
        return state

    def sender_power_level(self, event: Event) -> PowerLevel:
        """The power level of `event`'s sender "when looking at their respective auth_events".

        All listed auth events count here, rejected or not: the spec excludes rejected events
        only from the iterative auth checks (and so does Synapse).
        """
        level = self._sender_power.get(event.event_id)
        if level is None:
            auth_state = self.auth_events_state(event, include_rejected=True)
            level = user_power_level(auth_state, event.sender)
            self._sender_power[event.event_id] = level
        return level


def reverse_topological_power_ordering(graph: EventGraph, event_ids: Collection[str]) -> list[str]:
    """v2 "Reverse topological power ordering" of `event_ids`, earliest first.

    Kahn's algorithm over the DAG of auth events restricted to `event_ids`: an event becomes a
    candidate once all of its auth events in the set are placed; among candidates the smallest by
    (greater sender power level, smaller origin_server_ts, smaller event_id) goes next.
    """
    members = set(event_ids)
    waiting_on: dict[str, int] = {}  # number of the event's auth events not yet placed
    dependants: dict[str, list[str]] = {event_id: [] for event_id in members}
    for event_id in members:
        auth_in_set = {a for a in graph.get(event_id).auth_event_ids if a in members}
        waiting_on[event_id] = len(auth_in_set)
        for auth_id in auth_in_set:
            dependants[auth_id].append(event_id)

    heap = [_power_sort_key(graph, e) for e, n in waiting_on.items() if n == 0]
    heapq.heapify(heap)
    ordered: list[str] = []
    while heap:
        event_id = heapq.heappop(heap)[2]
        ordered.append(event_id)
        for dependant in dependants[event_id]:
            waiting_on[dependant] -= 1
            if waiting_on[dependant] == 0:
                heapq.heappush(heap, _power_sort_key(graph, dependant))
    if len(ordered) != len(members):
        raise StateResolutionError("the auth events of the conflicted events contain a cycle")
    return ordered


def _power_sort_key(graph: EventGraph, event_id: str) -> tuple[PowerLevel, int, str]:
    event = graph.get(event_id)
    return (-graph.sender_power_level(event), event.origin_server_ts, event_id)


def mainline(graph: EventGraph, power_levels_event_id: str | None) -> list[str]:
    """v2 "Mainline ordering": [P0, P1, …, Pn], each Pi+1 the power levels in Pi's auth events."""
    chain: list[str] = []
    seen: set[str] = set()
    current = power_levels_event_id
    while current is not None:
        if current in seen:
            raise StateResolutionError(f"power-levels auth chain loops at {current}")
        seen.add(current)
        chain.append(current)
        current = graph.power_levels_parent(graph.get(current))
    return chain


def mainline_ordering(
    graph: EventGraph, event_ids: Iterable[str], power_levels_event_id: str | None
) -> list[str]:
    """v2 "Mainline ordering based on P" of `event_ids`, smallest first.

    The mainline position of e is the index in P's mainline of the first power-levels event met
    walking e's power-levels auth chain (e itself excluded), or infinity. Events with a greater
    position come first; ties fall to origin_server_ts, then event_id.
    """
    positions: dict[str, PowerLevel] = {
        pl_id: index for index, pl_id in enumerate(mainline(graph, power_levels_event_id))
    }
    keyed: list[tuple[PowerLevel, int, str]] = []
    for event_id in event_ids:
        event = graph.get(event_id)
        position = _mainline_position(graph, event, positions)
        keyed.append((-position, event.origin_server_ts, event_id))
    keyed.sort()
    return [event_id for _, _, event_id in keyed]


def _mainline_position(
    graph: EventGraph, event: Event, positions: dict[str, PowerLevel]
) -> PowerLevel:
    """Walk e1, e2, … (the power-levels auth chain of `event`) to the first event on the mainline.

    Positions found for power-levels events off the mainline are remembered in `positions`, so
    each power-levels event is walked at most once per ordering.
    """
    walked: set[str] = set()
    current = graph.power_levels_parent(event)
    position: PowerLevel = MAINLINE_INFINITY
    while current is not None:
        known = positions.get(current)
        if known is not None:
            position = known
            break
        if current in walked:
            raise StateResolutionError(f"power-levels auth chain loops at {current}")
        walked.add(current)
        current = graph.power_levels_parent(graph.get(current))
    for pl_id in walked:
        # An off-mainline power-levels event leads to the same mainline event as `event` did.
        positions[pl_id] = position
    return position
