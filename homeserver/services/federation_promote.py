"""An outlier received again as a new event of its room becomes part of the timeline.

S2S "Retrieving event authorization information" / "Checks performed on receipt of a PDU":
an event held only as an outlier (room state from `send_join`, an auth event or prev event
fetched to check another one) has no known state before it. When it arrives through `/send`
or `/get_missing_events`, the receipt checks give that state (homeserver/services/
federation_inbound.py `PduReceiver.decide`), and the event is "de-outliered": state groups, a
new stream position (announced to /sync like any new event), and — unless soft failed or
already followed by a stored event — the room's forward extremities and current state move
on, exactly as for a new event (S2S "Room State": the state of a forked DAG is resolved).

The event pipeline's insert path refuses an event already stored, so the write is
`OutlierStore.promote_to_timeline` (homeserver/storage/outliers.py), one transaction, done
while the room's write lock is held (`EventPipeline.remote_batch`, left without committing),
so no other writer of the room sees the room state change under it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from federation.pdu import Event
from federation.room_state import StateKey
from federation.room_versions import RoomVersion
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_verdicts import StateIds, Verdict
from homeserver.services.notifier import Notifier
from homeserver.services.state import RoomState, RoomStateCache
from homeserver.services.streams import StreamTracker
from homeserver.storage.event_rows import EventToPersist, PersistBatch
from homeserver.storage.events import EventsStore
from homeserver.storage.outliers import OutlierStore, Promotion, RoomAdvance
from homeserver.storage.rooms import CurrentStateDelta
from homeserver.storage.state import NewStateGroup, plan_state_group

logger = logging.getLogger(__name__)

Resolver = Callable[[RoomVersion, Sequence[StateIds]], Awaitable[StateIds]]
MEMBER = "m.room.member"


class OutlierPromoter:
    def __init__(
        self,
        *,
        outliers: OutlierStore,
        events: EventsStore,
        cache: RoomStateCache,
        pipeline: EventPipeline,
        notifier: Notifier,
        tracker: StreamTracker,
        server_name: str,
        clock: Callable[[], int],
    ) -> None:
        self._outliers = outliers
        self._events = events
        self._cache = cache
        self._pipeline = pipeline
        self._notifier = notifier
        self._tracker = tracker
        self._server_name = server_name
        self._clock = clock

    async def held_as_outliers(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these stored events are outliers (candidates for promotion)."""
        return await self._outliers.get_outliers(event_ids) if event_ids else set()

    async def promote(self, event: Event, verdict: Verdict, resolve: Resolver) -> bool:
        """Make the outlier `event` a timeline event, given the receipt checks' verdict; the
        caller holds the inbound room lock. A rejected one stays an outlier (it may be part
        of the room's state). True if promoted."""
        if verdict.rejected_reason is not None:
            logger.info("outlier %s left as it is: %s", event.event_id, verdict.rejected_reason)
            return False
        room_id = event.room_id
        async with self._pipeline.remote_batch(room_id, event.room_version, []):
            room = await self._cache.get_room_state(room_id)
            if room is None:
                return False
            state_before = verdict.state_before
            state_after = dict(state_before)
            if event.is_state:
                state_after[event.state_tuple] = event.event_id
            groups, before_group, after_group = await self._plan_groups(
                room_id, state_before, state_after
            )
            has_child = bool(await self._events.get_events_with_children([event.event_id]))
            new_room: RoomState | None = None
            advance: RoomAdvance | None = None
            if not verdict.soft_failed and not has_child:
                new_room = await _advanced_room(room, event, state_after, after_group, resolve)
                advance = _advance_between(room, new_room)
            async with self._tracker.allocate(self._events.allocate_stream_positions, 1) as ps:
                promotion = Promotion(
                    event, ps[0], before_group, after_group, soft_failed=verdict.soft_failed
                )
                if not await self._outliers.promote_to_timeline(
                    promotion, groups, advance, self._server_name
                ):
                    return False
                self._after_commit(promotion, groups, state_after, new_room)
        return True

    async def _plan_groups(
        self, room_id: str, state_before: StateIds, state_after: StateIds
    ) -> tuple[list[NewStateGroup], int, int]:
        """A state group for the state before the event, and one after it for a state event
        (a delta on the first)."""
        _, ids = await self._events.allocate_ids(0, 2)
        before = plan_state_group(ids[0], room_id, state_before, None, None)
        if state_after == state_before:
            return [before], before.state_group, before.state_group
        after = plan_state_group(ids[1], room_id, state_after, before.info, state_before)
        return [before, after], before.state_group, after.state_group

    def _after_commit(
        self,
        promotion: Promotion,
        groups: Sequence[NewStateGroup],
        state_after: StateIds,
        new_room: RoomState | None,
    ) -> None:
        """Memory catches up and /sync waiters wake (as the pipeline's commit does)."""
        event = promotion.event
        for group in groups:
            known = state_after if group.state_group == promotion.state_group_after else None
            self._cache.cache_state_group(group.info, known)
        self._cache.cache_event_groups(
            event.event_id, promotion.state_group_after, promotion.state_group_before
        )
        if new_room is not None:
            self._cache.set_room_state(new_room)
        item = EventToPersist(
            event,
            promotion.stream_ordering,
            promotion.state_group_before,
            promotion.state_group_after,
            soft_failed=promotion.soft_failed,
        )
        self._notifier.record_committed(PersistBatch(event.room_id, [item], self._clock()))
        if item.visible_to_clients:
            affected = (event.state_key,) if event.type == MEMBER and event.state_key else ()
            self._notifier.notify_new_event(event.room_id, promotion.stream_ordering, affected)


async def _advanced_room(
    room: RoomState, event: Event, state_after: StateIds, after_group: int, resolve: Resolver
) -> RoomState:
    """The room after an accepted event with no stored child: it replaces its prev events
    among the forward extremities; the current state is the state after it when it follows
    every extremity, else the resolution of the current state and the state after it."""
    prevs = set(event.prev_event_ids)
    linear = room.forward_extremities <= prevs
    extremities = (room.forward_extremities - prevs) | {event.event_id}
    if linear:
        state: StateIds = state_after
        group: int | None = after_group
    else:
        state = await resolve(room.room_version, [room.state, state_after])
        group = None
    return RoomState(room.room_id, room.room_version, dict(state), group, frozenset(extremities))


def _advance_between(old: RoomState, new: RoomState) -> RoomAdvance:
    upserts = {key: i for key, i in new.state.items() if old.state.get(key) != i}
    removed: list[StateKey] = [key for key in old.state if key not in new.state]
    return RoomAdvance(
        extremities_removed=old.forward_extremities - new.forward_extremities,
        extremities_added=new.forward_extremities - old.forward_extremities,
        current_state=CurrentStateDelta(upserts, removed),
    )
