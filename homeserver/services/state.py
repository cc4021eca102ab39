"""Room state in memory: each room's current state, state groups and parsed events.

Readers never take the room lock: they read a `RoomState` snapshot, which the event pipeline
replaces (never mutates) after each commit. A room is loaded lazily from storage on first use.
Only the pipeline writes, so only the pipeline updates or invalidates this cache.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from federation.pdu import Event
from federation.room_versions import RoomVersion, room_version
from homeserver.storage.events import EventsStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.state import StateGroupInfo, StateKey, StateStore, apply_delta

K = TypeVar("K")
V = TypeVar("V")

MEMBER: Final = "m.room.member"
# Parsed events kept (config `caches.event_cache_size`); ~2–2.7 KB each (docs/memory.md).
DEFAULT_EVENT_CACHE_SIZE: Final = 10_000
DEFAULT_STATE_GROUP_CACHE_SIZE: Final = 256


class LruCache(Generic[K, V]):
    """A small least-recently-used map."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._max_size:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True)
class RoomState:
    """A consistent snapshot of a room as of its last persisted event."""

    room_id: str
    room_version: RoomVersion
    # Current state: the resolved state of the forward extremities.
    state: Mapping[StateKey, str]
    # A stored state group whose state equals `state`, when one is known.
    state_group: int | None
    # Events with no stored child: the prev_events of the next local event.
    forward_extremities: frozenset[str]


@dataclass(frozen=True, slots=True)
class _JoinedMembers:
    """The joined members of a room as of one current state (the `state` mapping they were
    derived from, and its state group when known)."""

    state: Mapping[StateKey, str]
    state_group: int | None
    # user_id → the event ID of their `m.room.member` event (membership "join").
    members: Mapping[str, str]

    def matches(self, room: RoomState) -> bool:
        if self.state is room.state:
            return True
        # A state group's state never changes, so the same group means the same state.
        return room.state_group is not None and room.state_group == self.state_group


class RoomStateCache:
    """Current state per room, state groups and an LRU of parsed events."""

    def __init__(
        self,
        events: EventsStore,
        rooms: RoomsStore,
        state: StateStore,
        *,
        event_cache_size: int = DEFAULT_EVENT_CACHE_SIZE,
        state_group_cache_size: int = DEFAULT_STATE_GROUP_CACHE_SIZE,
    ) -> None:
        self._events = events
        self._rooms = rooms
        self._state = state
        self._room_states: dict[str, RoomState] = {}
        # Bumped whenever the pipeline replaces or drops a room's entry, so a lazy load that
        # raced with a commit never overwrites the newer state.
        self._generations: dict[str, int] = {}
        self._event_cache: LruCache[str, Event] = LruCache(event_cache_size)
        self._group_states: LruCache[int, Mapping[StateKey, str]] = LruCache(state_group_cache_size)
        self._group_infos: LruCache[int, StateGroupInfo] = LruCache(state_group_cache_size * 16)
        self._event_groups: LruCache[str, tuple[int, int]] = LruCache(event_cache_size)
        self._joined: dict[str, _JoinedMembers] = {}

    # --- rooms ----------------------------------------------------------------------------

    async def get_room_state(self, room_id: str) -> RoomState | None:
        """The room's current snapshot; None for a room this server does not know."""
        cached = self._room_states.get(room_id)
        if cached is not None:
            return cached
        generation = self._generations.get(room_id, 0)
        loaded = await self._load_room(room_id)
        if loaded is not None and self._generations.get(room_id, 0) == generation:
            self._room_states.setdefault(room_id, loaded)
            return self._room_states[room_id]
        return loaded

    async def _load_room(self, room_id: str) -> RoomState | None:
        version_id = await self._rooms.get_room_version(room_id)
        if version_id is None:
            return None
        state, extremities = await asyncio.gather(
            self._rooms.get_current_state_ids(room_id),
            self._rooms.get_forward_extremities(room_id),
        )
        state_group = None
        if len(extremities) == 1:
            # With one extremity, the current state is the state after it.
            groups = await self.get_state_groups_for_events(extremities)
            (extremity,) = extremities
            if extremity in groups:
                state_group = groups[extremity][0]
        return RoomState(
            room_id=room_id,
            room_version=room_version(version_id),
            state=MappingProxyType(state),
            state_group=state_group,
            forward_extremities=frozenset(extremities),
        )

    def set_room_state(self, room_state: RoomState) -> None:
        """Pipeline only: the room's new snapshot, after its transaction committed."""
        self._generations[room_state.room_id] = self._generations.get(room_state.room_id, 0) + 1
        self._room_states[room_state.room_id] = room_state

    def invalidate_room(self, room_id: str) -> None:
        """Forget a room's snapshot; the next read reloads it from storage."""
        self._generations[room_id] = self._generations.get(room_id, 0) + 1
        self._room_states.pop(room_id, None)

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        room = await self.get_room_state(room_id)
        return None if room is None else room.room_version

    async def get_current_state_ids(self, room_id: str) -> Mapping[StateKey, str]:
        """`(type, state_key) → event_id` of the current state (empty for an unknown room)."""
        room = await self.get_room_state(room_id)
        return MappingProxyType({}) if room is None else room.state

    async def get_current_state(
        self, room_id: str, keys: Iterable[StateKey] | None = None
    ) -> Mapping[StateKey, Event]:
        """The current state events, all of them or those under `keys`."""
        state = await self.get_current_state_ids(room_id)
        wanted = state if keys is None else {k: state[k] for k in keys if k in state}
        events = await self.get_events(wanted.values())
        return {key: events[eid] for key, eid in wanted.items() if eid in events}

    async def get_joined_members(self, room_id: str) -> Mapping[str, str]:
        """`user_id → m.room.member event ID` of the users whose current membership is "join"
        (empty for an unknown room).

        Derived once per current state and then updated from the membership events that
        changed between two states, so a room's messages never re-read its whole state.
        """
        room = await self.get_room_state(room_id)
        if room is None:
            return MappingProxyType({})
        known = self._joined.get(room_id)
        if known is not None and known.matches(room):
            return known.members
        members = dict(known.members) if known is not None else {}
        changed = _changed_memberships(known.state if known is not None else None, room.state)
        # Removed state entries and memberships whose event is unknown count as not joined.
        events = await self.get_events(eid for eid in changed.values() if eid is not None)
        for user_id, event_id in changed.items():
            event = None if event_id is None else events.get(event_id)
            if event is not None and event.membership == "join":
                members[user_id] = event.event_id
            else:
                members.pop(user_id, None)
        result = _JoinedMembers(room.state, room.state_group, MappingProxyType(members))
        current = self._joined.get(room_id)
        # A concurrent reader may have stored its own (equally consistent) result meanwhile.
        if current is None or current is known:
            self._joined[room_id] = result
        return result.members

    # --- events ---------------------------------------------------------------------------

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """Parsed events by ID, from the LRU or storage; unknown IDs are absent."""
        found: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in event_ids:
            event = self._event_cache.get(event_id)
            if event is not None:
                found[event_id] = event
            else:
                missing.append(event_id)
        if missing:
            for event_id, row in (await self._events.get_event_rows(missing)).items():
                self._event_cache.put(event_id, row.event)
                found[event_id] = row.event
        return found

    def cache_events(self, events: Iterable[Event]) -> None:
        """Pipeline only: events it just persisted (saves re-reading them)."""
        for event in events:
            self._event_cache.put(event.event_id, event)

    # --- state groups ---------------------------------------------------------------------

    async def get_state_groups_for_events(
        self, event_ids: Iterable[str]
    ) -> dict[str, tuple[int, int]]:
        """`event_id → (state group after, state group before)`; outliers are absent."""
        found: dict[str, tuple[int, int]] = {}
        missing: list[str] = []
        for event_id in event_ids:
            groups = self._event_groups.get(event_id)
            if groups is not None:
                found[event_id] = groups
            else:
                missing.append(event_id)
        if missing:
            loaded = await self._state.get_state_groups_for_events(missing)
            for event_id, groups in loaded.items():
                self._event_groups.put(event_id, groups)
                found[event_id] = groups
        return found

    def cache_event_groups(self, event_id: str, after: int, before: int) -> None:
        self._event_groups.put(event_id, (after, before))

    async def get_state_group_info(self, state_group: int) -> StateGroupInfo | None:
        info = self._group_infos.get(state_group)
        if info is None:
            info = await self._state.get_state_group_info(state_group)
            if info is not None:
                self._group_infos.put(state_group, info)
        return info

    async def get_state_group_state(self, state_group: int) -> Mapping[StateKey, str]:
        """The full state of a group; a delta on a cached group reads only the delta."""
        cached = self._group_states.get(state_group)
        if cached is not None:
            return cached
        info = await self.get_state_group_info(state_group)
        base = None
        if info is not None and info.prev_state_group is not None:
            base = self._group_states.get(info.prev_state_group)
        if base is not None:
            delta = await self._state.get_state_group_delta(state_group)
            state = apply_delta(base, delta[1] if delta else {})
        else:
            state = await self._state.get_state_group_state(state_group)
        result = MappingProxyType(state)
        self._group_states.put(state_group, result)
        return result

    def cache_state_group(self, info: StateGroupInfo, state: Mapping[StateKey, str] | None) -> None:
        """Pipeline only: a group it just wrote, and its full state if at hand."""
        self._group_infos.put(info.state_group, info)
        if state is not None:
            # The pipeline never mutates a state mapping once built, so no copy is needed.
            view = MappingProxyType(state) if isinstance(state, dict) else state
            self._group_states.put(info.state_group, view)

    async def get_state_after_event(self, event_id: str) -> Mapping[StateKey, str] | None:
        """State after the event (None for outliers and unknown events)."""
        groups = await self.get_state_groups_for_events([event_id])
        if event_id not in groups:
            return None
        return await self.get_state_group_state(groups[event_id][0])

    async def get_state_before_event(self, event_id: str) -> Mapping[StateKey, str] | None:
        """State before the event, what it was authorised against (S2S `/state_ids`)."""
        groups = await self.get_state_groups_for_events([event_id])
        if event_id not in groups:
            return None
        return await self.get_state_group_state(groups[event_id][1])

    # S2S: "the state of the room at the given event" is the state before it.
    get_state_at_event = get_state_before_event


def _changed_memberships(
    old: Mapping[StateKey, str] | None, new: Mapping[StateKey, str]
) -> dict[str, str | None]:
    """`user_id → member event ID now` (None: no longer in state) for each `m.room.member`
    entry that differs between two current states; every member entry when `old` is None."""
    if old is None:
        return {key[1]: eid for key, eid in new.items() if key[0] == MEMBER}
    changed: dict[str, str | None] = {
        key[1]: eid for key, eid in new.items() if key[0] == MEMBER and old.get(key) != eid
    }
    for key in old:
        if key[0] == MEMBER and key not in new:
            changed[key[1]] = None
    return changed
