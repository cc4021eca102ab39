"""One room of a /sync response: its timeline, the state before it, its summary, and the
stripped state of invites and knocks (C-S "Syncing"; sync.yaml "Joined Room", "Left Room",
"Invited Room", "Knocked Room").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.pdu import Event
from homeserver.services.filters import (
    Filter,
    RoomEventFilter,
    event_limit,
    event_matches,
)
from homeserver.services.ignored_users import NOBODY, IgnoredUsers, hidden_from
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_events import (
    STRIPPED_STATE_TYPES,
    EventView,
    matches_view,
    stripped_state,
)
from homeserver.services.sync_recent import RecentEvents
from homeserver.services.tokens import StreamToken
from homeserver.services.visibility import VisibilityLoader, filter_visible
from homeserver.storage.event_rows import EventRow
from homeserver.storage.events import EventsStore
from homeserver.storage.sync_data import SyncDataStore

MEMBER: Final = "m.room.member"
StateKey = tuple[str, str]
# How many batches of `limit + 1` events to read while filters drop events.
_MAX_TIMELINE_READS: Final = 5
MAX_HEROES: Final = 5


@dataclass(frozen=True, slots=True)
class RoomRange:
    """What to sync of one room for one user."""

    room_id: str
    user_id: str
    device_id: str | None
    # Events after `since` (None: the room is new to the client: full state) …
    since: int | None
    # … up to `until` (the token's position, or the user's leave).
    until: int
    full_state: bool
    # Stream position of the user's membership event, and whether it is a join.
    membership_position: int
    joined: bool


@dataclass(frozen=True, slots=True)
class Timeline:
    events: list[EventView]
    limited: bool
    prev_batch: str


@dataclass(frozen=True, slots=True)
class RoomSnapshot:
    timeline: Timeline
    state: list[EventView]


class RoomSyncBuilder:
    def __init__(
        self,
        events: EventsStore,
        state: RoomStateCache,
        store: SyncDataStore,
        visibility: VisibilityLoader,
    ) -> None:
        self._events = events
        self._state = state
        self._store = store
        self._visibility = visibility
        # The latest events of each room in memory (set by SyncService): a woken /sync's
        # timeline comes from there; older ranges from the database.
        self.recent: RecentEvents | None = None
        # C-S "Ignoring Users": who each user ignores (set by sync_setup.py).
        self.ignored: IgnoredUsers | None = None

    async def room(
        self, rng: RoomRange, sync_filter: Filter, heroes: Collection[str] = ()
    ) -> RoomSnapshot:
        """The timeline and the state before it; with lazy-loading, the member events of
        `heroes` join the state (sync.yaml `m.heroes`: they "MUST be included")."""
        timeline = await self.timeline(rng, sync_filter.room.timeline)
        room = sync_filter.room
        state = await self.state(rng, room.state, room.timeline, timeline, heroes)
        return RoomSnapshot(timeline, state)

    # --- timeline ---------------------------------------------------------------------------

    async def timeline(self, rng: RoomRange, timeline_filter: RoomEventFilter) -> Timeline:
        """The newest `limit` visible, matching events in `(since, until]`; `limited` when
        older ones in the range were left out (C-S "Syncing")."""
        limit = event_limit(timeline_filter)
        lower, upper = rng.since or 0, rng.until
        ignored = await self.ignored.ignored_by(rng.user_id) if self.ignored else NOBODY
        collected: list[EventRow] = []
        exhausted = False
        for _ in range(_MAX_TIMELINE_READS):
            rows = await self._events_in_range(rng.room_id, lower, upper, limit + 1)
            matching = [
                row
                for row in rows
                if event_matches(timeline_filter, matches_view(row.event), room_id=rng.room_id)
                and not hidden_from(row.event, ignored)
            ]
            collected = await self._visible(rng, matching) + collected
            if len(rows) <= limit:
                exhausted = True
                break
            upper = rows[0].stream_ordering - 1
            if len(collected) > limit:
                break
        limited = not exhausted or len(collected) > limit
        collected = collected[-limit:] if limit else []
        start = collected[0].stream_ordering - 1 if collected else rng.until
        views = await self._views(rng, collected)
        return Timeline(views, limited, str(StreamToken(start)))

    async def _events_in_range(
        self, room_id: str, lower: int, upper: int, limit: int
    ) -> list[EventRow]:
        if self.recent is not None:
            rows = self.recent.events_in_range(room_id, lower, upper, limit)
            if rows is not None:
                return rows
        return await self._events.get_room_events_in_range(room_id, lower, upper, limit)

    async def _visible(self, rng: RoomRange, rows: list[EventRow]) -> list[EventRow]:
        # Joined all along: membership is "join" at every event after the join (rule 2).
        if rng.joined and all(row.stream_ordering > rng.membership_position for row in rows):
            return rows
        pairs = await filter_visible(
            rng.user_id,
            [(row.event, row.stream_ordering) for row in rows],
            self._visibility,
            self._store.get_latest_join,
        )
        kept = {event.event_id for event, _ in pairs}
        return [row for row in rows if row.event.event_id in kept]

    async def _views(self, rng: RoomRange, rows: Sequence[EventRow]) -> list[EventView]:
        redaction_ids = [row.redacted_because for row in rows if row.redacted_because]
        redactions = await self._state.get_events(redaction_ids) if redaction_ids else {}
        replaced = await self._replaced_state(rows)
        views = []
        for row in rows:
            event = row.event
            own_device = row.txn_device_id is not None and row.txn_device_id == rng.device_id
            views.append(
                EventView(
                    event,
                    row.stream_ordering,
                    redactions.get(row.redacted_because) if row.redacted_because else None,
                    row.txn_id if own_device and event.sender == rng.user_id else None,
                    replaced.get(event.event_id),
                )
            )
        return views

    async def _replaced_state(self, rows: Sequence[EventRow]) -> dict[str, Event]:
        """`event_id → the state event it replaced`, for the state events among `rows`."""
        previous: dict[str, str] = {}
        for row in rows:
            event = row.event
            if event.state_key is None:
                continue
            before = await self._state.get_state_before_event(event.event_id)
            if before is not None and (prev_id := before.get(event.state_tuple)) is not None:
                previous[event.event_id] = prev_id
        found = await self._state.get_events(previous.values()) if previous else {}
        return {eid: found[prev] for eid, prev in previous.items() if prev in found}

    # --- state ------------------------------------------------------------------------------

    async def state(
        self,
        rng: RoomRange,
        state_filter: RoomEventFilter,
        timeline_filter: RoomEventFilter,
        timeline: Timeline,
        heroes: Collection[str] = (),
    ) -> list[EventView]:
        """The state at the start of the timeline: all of it for a room new to the client (or
        `full_state`), else the delta since `since` (C-S "Syncing", the note on `state`)."""
        at_start = await self._state_at_start(rng, timeline)
        timeline_ids = {view.event.event_id for view in timeline.events}
        full = rng.since is None or rng.full_state
        if full:
            chosen = dict(at_start)
        elif timeline.limited or _filters_events(timeline_filter):
            at_since = await self._state_at(rng.room_id, rng.since or 0)
            chosen = {k: v for k, v in at_start.items() if at_since.get(k) != v}
        else:
            chosen = {}
        if state_filter.lazy_load_members:
            chosen = self._lazy_members(rng, chosen, at_start, timeline, full, heroes)
        events = await self._state.get_events(
            eid for eid in chosen.values() if eid not in timeline_ids
        )
        picked = [
            e
            for e in events.values()
            if event_matches(state_filter, matches_view(e), room_id=rng.room_id)
        ]
        picked.sort(key=lambda e: (e.type, e.state_key or ""))
        return [EventView(e, 0) for e in picked]

    def _lazy_members(
        self,
        rng: RoomRange,
        chosen: dict[StateKey, str],
        at_start: Mapping[StateKey, str],
        timeline: Timeline,
        full: bool,
        heroes: Collection[str],
    ) -> dict[StateKey, str]:
        """C-S "Lazy-loading room members": member events only for the timeline's senders
        (and the user's own when the room is new to the client or on full state)."""
        wanted: set[str] = {view.event.sender for view in timeline.events} | set(heroes)
        if full:
            wanted.add(rng.user_id)
        kept = {k: v for k, v in chosen.items() if k[0] != MEMBER}
        for user_id in wanted:
            key = (MEMBER, user_id)
            if key in at_start:
                kept[key] = at_start[key]
        return kept

    async def _state_at_start(self, rng: RoomRange, timeline: Timeline) -> Mapping[StateKey, str]:
        if timeline.events:
            before = await self._state.get_state_before_event(timeline.events[0].event.event_id)
            if before is not None:
                return before
        return await self._state_at(rng.room_id, rng.until)

    async def _state_at(self, room_id: str, position: int) -> Mapping[StateKey, str]:
        """The room state after the last event at or before `position`."""
        event_id = await self._store.get_last_event_id_at(room_id, position)
        if event_id is None:
            return {}
        return await self._state.get_state_after_event(event_id) or {}

    # --- summary ----------------------------------------------------------------------------

    async def summary(self, room_id: str, user_id: str) -> dict[str, Any]:
        """sync.yaml RoomSummary: heroes and member counts, from the current state."""
        members = await self._store.get_current_members(room_id)
        joined = [u for u, m, _ in members if m == "join"]
        invited = [u for u, m, _ in members if m == "invite"]
        others = [(u, m) for u, m, _ in members if u != user_id]  # ordered by stream ordering
        summary: dict[str, Any] = {
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }
        # `m.heroes` is required only when the name and canonical alias are unset or empty;
        # like Synapse (and as SyTest checks) a named room gets none, nor their LL members.
        if not await self._has_name(room_id):
            heroes = [u for u, m in others if m in ("join", "invite")][:MAX_HEROES]
            if not heroes:
                heroes = [u for u, m in others if m in ("leave", "ban")][:MAX_HEROES]
            summary["m.heroes"] = heroes
        return summary

    async def _has_name(self, room_id: str) -> bool:
        """Whether `m.room.name` or `m.room.canonical_alias` names the room (non-empty)."""
        keys = (("m.room.name", ""), ("m.room.canonical_alias", ""))
        state = await self._state.get_current_state(room_id, keys)
        name = state.get(keys[0])
        alias = state.get(keys[1])
        return bool(
            (name is not None and name.content.get("name"))
            or (alias is not None and alias.content.get("alias"))
        )

    # --- invites and knocks -----------------------------------------------------------------

    async def stripped_room_state(self, membership_event: Event) -> list[dict[str, Any]]:
        """The invite (or knock) state: what came with the event over federation, else the
        room's current state here; the membership event itself last."""
        unsigned = membership_event.pdu.get("unsigned")
        key = "invite_room_state" if membership_event.membership == "invite" else "knock_room_state"
        given = unsigned.get(key) if isinstance(unsigned, Mapping) else None
        if isinstance(given, list):
            events: list[Mapping[str, Any]] = [e for e in given if isinstance(e, Mapping)]
        else:
            keys = [(t, "") for t in STRIPPED_STATE_TYPES]
            keys.append((MEMBER, membership_event.sender))
            current = await self._state.get_current_state(membership_event.room_id, keys)
            events = [
                e.pdu for k, e in current.items() if k != (MEMBER, membership_event.state_key)
            ]
        own = [
            e
            for e in events
            if (e.get("type"), e.get("state_key")) != (MEMBER, membership_event.state_key)
        ]
        return stripped_state([*own, membership_event.pdu])


def _filters_events(event_filter: RoomEventFilter) -> bool:
    """Whether the timeline filter may drop state events (then state must make up for it)."""
    return any(
        value is not None
        for value in (
            event_filter.types,
            event_filter.not_types,
            event_filter.senders,
            event_filter.not_senders,
            event_filter.contains_url,
        )
    )
