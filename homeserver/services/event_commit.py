"""The one persist path of the event pipeline (GUIDE.md "How data flows"): one PostgreSQL
transaction per batch → commit → update the in-memory state → wake /sync waiters → hand the
new events to the `on_persisted` hooks (federation sending, push evaluation).

Used by homeserver/services/event_pipeline.py, which builds or receives the batches.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final

from federation.pdu import Event
from homeserver.services.notifier import Notifier
from homeserver.services.room_batch import RoomBatch
from homeserver.services.state import RoomStateCache
from homeserver.services.streams import StreamTracker
from homeserver.storage.event_rows import EventToPersist
from homeserver.storage.events import EventsStore

logger = logging.getLogger(__name__)

PersistedHook = Callable[[Sequence[Event]], Awaitable[None]]
MEMBER: Final = "m.room.member"


class BatchCommitter:
    def __init__(
        self,
        *,
        events: EventsStore,
        state: RoomStateCache,
        notifier: Notifier,
        tracker: StreamTracker,
        hooks: Sequence[PersistedHook],
        clock: Callable[[], int],
    ) -> None:
        self._events = events
        self._state = state
        self._notifier = notifier
        self._tracker = tracker
        self._hooks = list(hooks)
        self._clock = clock

    def add_persisted_hook(self, hook: PersistedHook) -> None:
        self._hooks.append(hook)

    async def commit(self, batch: RoomBatch) -> list[EventToPersist]:
        """One transaction for the whole batch; then memory catches up and waiters wake.

        Stream positions are taken only now, so they stay in flight (holding back every
        reader's position) for no longer than the transaction itself.
        """
        count = len(batch.to_persist)
        async with self._tracker.allocate(self._events.allocate_stream_positions, count) as ps:
            items = [
                replace(p, stream_ordering=s) for p, s in zip(batch.to_persist, ps, strict=True)
            ]
            persisted = batch.to_persist_batch(items, self._clock())
            await self._events.persist(persisted)
            self._cache_batch(batch)
            self._notifier.record_committed(persisted)  # /sync's recent events (sync_recent)
            for item in items:
                if item.visible_to_clients or item.out_of_band_membership:
                    self._notify(item)
        return items

    async def commit_backfilled(self, batch: RoomBatch) -> list[EventToPersist]:
        """The one transaction for backfilled events: negative positions, most negative for
        the oldest (the batch is oldest first); outside the stream tracker, nobody notified."""
        positions = await self._events.allocate_backfill_positions(len(batch.to_persist))
        items = [
            replace(p, stream_ordering=s) for p, s in zip(batch.to_persist, positions, strict=True)
        ]
        await self._events.persist(batch.to_persist_batch(items, self._clock()))
        self._cache_batch(batch)
        return items

    def _cache_batch(self, batch: RoomBatch) -> None:
        """Memory catches up with a committed batch."""
        self._state.cache_events(batch.events.values())
        for group in batch.groups:
            state = batch.group_states.get(group.state_group)
            self._state.cache_state_group(group.info, state)
        for event_id, (after, before) in batch.event_groups.items():
            self._state.cache_event_groups(event_id, after, before)
        self._state.set_room_state(batch.room_state())

    def _notify(self, item: EventToPersist) -> None:
        event = item.event
        affected = (event.state_key,) if event.type == MEMBER and event.state_key else ()
        self._notifier.notify_new_event(event.room_id, item.stream_ordering, affected)

    async def run_hooks(self, events: Sequence[Event]) -> None:
        if not events:
            return
        for hook in self._hooks:
            try:
                await hook(events)
            except Exception:
                # The events are committed; a failing consumer must not fail the sender.
                logger.exception("on_persisted hook %r failed", hook)
