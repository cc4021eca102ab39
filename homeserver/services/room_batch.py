"""One batch of events of one room on its way to the persist transaction.

A `RoomBatch` starts from the room's current snapshot and applies events one by one in memory:
the state before and after each (as state groups, deltas against snapshots), the forward
extremities, the current state (resolved when the DAG forks), redactions. Nothing is written
until the pipeline commits the whole batch (homeserver/services/event_pipeline.py), so a failed
transaction leaves no trace in memory either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson

from federation.pdu import Event
from federation.room_state import CREATE, POWER_LEVELS, StateKey
from federation.room_versions import RoomVersion
from federation.state_res import resolve_state
from homeserver.services.event_builder import REDACTION, redaction_applies
from homeserver.services.state import RoomState, RoomStateCache
from homeserver.storage.event_rows import EventToPersist, PersistBatch
from homeserver.storage.events import EventsStore
from homeserver.storage.rooms import ClientTransaction, CurrentStateDelta, NewRoom
from homeserver.storage.state import NewStateGroup, StateGroupInfo, plan_state_group

StateIds = Mapping[StateKey, str]


@dataclass(slots=True)
class RoomBatch:
    room_id: str | None  # None only until a v12 create event gives the room its ID
    room_version: RoomVersion
    initial_state: StateIds
    initial_extremities: frozenset[str]
    # The room as it will be after the events applied so far.
    state: StateIds
    state_group: int | None
    extremities: set[str]
    new_room: bool = False
    is_public: bool = False
    # How many state groups the batch will likely write: allocated in one round trip.
    state_group_hint: int = 4
    group_ids: list[int] = field(default_factory=list)
    events: dict[str, Event] = field(default_factory=dict)
    to_persist: list[EventToPersist] = field(default_factory=list)
    groups: list[NewStateGroup] = field(default_factory=list)
    group_states: dict[int, StateIds] = field(default_factory=dict)
    event_groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    redactions_applied: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_room(room: RoomState) -> RoomBatch:
        return RoomBatch(
            room_id=room.room_id,
            room_version=room.room_version,
            initial_state=room.state,
            initial_extremities=room.forward_extremities,
            state=room.state,
            state_group=room.state_group,
            extremities=set(room.forward_extremities),
        )

    @staticmethod
    def new(room_id: str | None, room_version: RoomVersion, is_public: bool) -> RoomBatch:
        empty: StateIds = MappingProxyType({})
        return RoomBatch(
            room_id=room_id,
            room_version=room_version,
            initial_state=empty,
            initial_extremities=frozenset(),
            state=empty,
            state_group=None,
            extremities=set(),
            new_room=True,
            is_public=is_public,
        )

    def to_persist_batch(self, items: Sequence[EventToPersist], now_ms: int) -> PersistBatch:
        """What the transaction writes; `items` are `to_persist` with their stream positions."""
        assert self.room_id is not None
        if self.state is self.initial_state:  # no state event changed it: skip the scan
            upserts: dict[StateKey, str] = {}
            removed: list[StateKey] = []
        else:
            initial = self.initial_state
            upserts = {k: v for k, v in self.state.items() if initial.get(k) != v}
            removed = [k for k in initial if k not in self.state]
        return PersistBatch(
            room_id=self.room_id,
            events=items,
            now_ms=now_ms,
            new_room=(
                NewRoom(self.room_id, self.room_version.identifier, now_ms, self.is_public)
                if self.new_room
                else None
            ),
            state_groups=self.groups,
            extremities_removed=self.initial_extremities - self.extremities,
            extremities_added=self.extremities - self.initial_extremities,
            current_state=CurrentStateDelta(upserts, removed),
            redactions_applied=self.redactions_applied,
        )

    def room_state(self) -> RoomState:
        """The room's snapshot once this batch is committed."""
        assert self.room_id is not None
        return RoomState(
            room_id=self.room_id,
            room_version=self.room_version,
            state=self.state,
            state_group=self.state_group,
            forward_extremities=frozenset(self.extremities),
        )


class BatchApplier:
    """Applies events to a `RoomBatch`, reading what it needs from the caches and storage."""

    def __init__(self, cache: RoomStateCache, events: EventsStore) -> None:
        self._cache = cache
        self._events = events

    async def get_events(self, batch: RoomBatch, event_ids: Iterable[str]) -> dict[str, Event]:
        """Events of this batch or stored ones, by ID."""
        found: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in event_ids:
            if event_id in batch.events:
                found[event_id] = batch.events[event_id]
            else:
                missing.append(event_id)
        if missing:
            found.update(await self._cache.get_events(missing))
        return found

    async def add_event(
        self,
        batch: RoomBatch,
        event: Event,
        state_before: StateIds,
        before_group: int | None,
        *,
        outlier: bool = False,
        soft_failed: bool = False,
        rejection_reason: str | None = None,
        txn: ClientTransaction | None = None,
        has_stored_child: bool = False,
        out_of_band_membership: bool = False,
        backfilled: bool = False,
    ) -> EventToPersist:
        """Place `event` in the batch: its stream position, state groups and room changes.

        `has_stored_child`: a stored event already cites it (backfill, late arrival), so it is
        no forward extremity. `out_of_band_membership`: an outlier membership of a local user in
        a room this server is not in (an invite received over federation, a rejected invite).
        `backfilled`: older history fetched for /messages; it gets its state groups but never
        changes the room's forward extremities or current state (it precedes both).
        """
        position = 0  # the stream position is assigned at commit
        batch.events[event.event_id] = event
        txn_response = orjson.dumps({"event_id": event.event_id}).decode() if txn else None
        if outlier:
            item = EventToPersist(
                event,
                position,
                outlier=True,
                rejection_reason=rejection_reason,
                txn=txn,
                out_of_band_membership=out_of_band_membership,
            )
            batch.to_persist.append(item)
            return item
        if before_group is None:
            candidates = []
            for prev_id in event.prev_event_ids:
                group = await self.group_after(batch, prev_id)
                if group is not None:
                    candidates.append(group)
            before_group = await self._store_state(batch, state_before, candidates)
        state_after, after_group = state_before, before_group
        if event.state_key is not None and rejection_reason is None:
            state_after = {**state_before, event.state_tuple: event.event_id}
            after_group = await self._store_state(batch, state_after, [before_group], reuse=False)
        batch.event_groups[event.event_id] = (after_group, before_group)
        item = EventToPersist(
            event,
            position,
            state_group_before=before_group,
            state_group_after=after_group,
            soft_failed=soft_failed,
            rejection_reason=rejection_reason,
            txn=txn,
            txn_response=txn_response,
        )
        batch.to_persist.append(item)
        if rejection_reason is None and not soft_failed:
            if not backfilled:
                await self._advance_room(batch, event, state_after, after_group, has_stored_child)
            if event.type == REDACTION and event.redacts is not None:
                await self._apply_redaction(batch, event, state_before)
        return item

    async def state_after_events(
        self, batch: RoomBatch, event_ids: Sequence[str]
    ) -> tuple[StateIds, int | None]:
        """The state after these events: one's own, or their resolution (S2S "Room State")."""
        found: list[tuple[StateIds, int]] = []
        for event_id in event_ids:
            group = await self.group_after(batch, event_id)
            if group is not None:
                found.append((await self.group_state(batch, group), group))
        if not found:
            return MappingProxyType({}), None
        if len({group for _, group in found}) == 1:
            return found[0]
        return await self._resolve(batch, [state for state, _ in found]), None

    async def _advance_room(
        self,
        batch: RoomBatch,
        event: Event,
        state_after: StateIds,
        after_group: int,
        has_stored_child: bool,
    ) -> None:
        """Forward extremities and current state after an accepted event."""
        prevs = set(event.prev_event_ids)
        if has_stored_child:
            if batch.extremities & prevs:
                batch.extremities -= prevs
                batch.state, batch.state_group = await self.state_after_events(
                    batch, sorted(batch.extremities)
                )
            return
        linear = batch.extremities <= prevs
        batch.extremities -= prevs
        batch.extremities.add(event.event_id)
        if linear:
            batch.state, batch.state_group = state_after, after_group
        else:
            # The DAG forks: the current state is the resolution of the extremities' states.
            batch.state, batch.state_group = await self.state_after_events(
                batch, sorted(batch.extremities)
            )

    async def _apply_redaction(
        self, batch: RoomBatch, redaction: Event, state_before: StateIds
    ) -> None:
        assert redaction.redacts is not None
        target = (await self.get_events(batch, [redaction.redacts])).get(redaction.redacts)
        if target is None:
            return  # applied when the target arrives (issue 5: late targets)
        keys = [k for k in ((CREATE, ""), (POWER_LEVELS, "")) if k in state_before]
        auth = await self.get_events(batch, [state_before[k] for k in keys])
        auth_state = {e.state_tuple: e for e in auth.values()}
        if redaction_applies(redaction, target, auth_state):
            batch.redactions_applied[target.event_id] = redaction.event_id

    async def apply_late_redactions(self, batch: RoomBatch, redactions: Mapping[str, str]) -> None:
        """Redactions stored before their targets (`target → redaction`) that now apply."""
        for target_id, redaction_id in redactions.items():
            found = await self.get_events(batch, [target_id, redaction_id])
            if target_id not in found or redaction_id not in found:
                continue
            before = await self._cache.get_state_before_event(redaction_id) or {}
            await self._apply_redaction(batch, found[redaction_id], before)

    # --- state groups ---------------------------------------------------------------------

    async def group_after(self, batch: RoomBatch, event_id: str) -> int | None:
        if event_id in batch.event_groups:
            return batch.event_groups[event_id][0]
        groups = await self._cache.get_state_groups_for_events([event_id])
        return groups[event_id][0] if event_id in groups else None

    async def group_state(self, batch: RoomBatch, group: int) -> StateIds:
        if group in batch.group_states:
            return batch.group_states[group]
        return await self._cache.get_state_group_state(group)

    async def _group_info(self, batch: RoomBatch, group: int) -> StateGroupInfo | None:
        for new in batch.groups:
            if new.state_group == group:
                return new.info
        return await self._cache.get_state_group_info(group)

    async def _store_state(
        self, batch: RoomBatch, state: StateIds, bases: Sequence[int], *, reuse: bool = True
    ) -> int:
        """A state group holding `state`: an existing base equal to it, or a new delta on the
        first base (a snapshot when there is none or its chain is long)."""
        if reuse:
            for group in bases:
                known = await self.group_state(batch, group)
                if known is state or known == state:
                    return group
        base = bases[0] if bases else None
        base_info = None if base is None else await self._group_info(batch, base)
        base_state = None if base is None else await self.group_state(batch, base)
        group_id = await self._next_group_id(batch)
        assert batch.room_id is not None
        plan = plan_state_group(group_id, batch.room_id, state, base_info, base_state)
        batch.groups.append(plan)
        batch.group_states[group_id] = state
        return group_id

    async def _next_group_id(self, batch: RoomBatch) -> int:
        if not batch.group_ids:
            _, batch.group_ids = await self._events.allocate_ids(0, max(batch.state_group_hint, 1))
            batch.state_group_hint = 4
        return batch.group_ids.pop(0)

    # --- state resolution -----------------------------------------------------------------

    async def _resolve(self, batch: RoomBatch, states: Sequence[StateIds]) -> StateIds:
        chains = [await self._auth_chain(batch, state.values()) for state in states]
        wanted = set().union(*chains, *(state.values() for state in states))
        event_map = await self.get_events(batch, wanted)
        return resolve_state(batch.room_version, states, chains, event_map)

    async def _auth_chain(self, batch: RoomBatch, event_ids: Iterable[str]) -> set[str]:
        """Auth chain of events of this batch (walked in memory) and stored ones (in SQL)."""
        chain: set[str] = set()
        stored: set[str] = set()
        todo = list(event_ids)
        while todo:
            event_id = todo.pop()
            event = batch.events.get(event_id)
            if event is None:
                stored.add(event_id)
                continue
            for auth_id in event.auth_event_ids:
                if auth_id not in chain:
                    chain.add(auth_id)
                    todo.append(auth_id)
        return chain | await self._events.get_auth_chain_ids(stored)
