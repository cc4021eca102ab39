"""Received events of one room, applied one at a time to one open batch, committed together.

The receiving side (homeserver/services/federation_inbound.py) decides about each PDU of a
transaction (S2S "Checks performed on receipt of a PDU") while the events before it in the same
transaction are still only in memory: a `RemoteBatch` answers what those checks read — events,
the state after an event, the room's current state — from the batch first and from the caches
after, and `commit` writes all the events it took in one PostgreSQL transaction (GUIDE.md "How
data flows"). Nothing is written, in the database or the caches, until `commit`.

A `RemoteBatch` exists only while its room's write lock is held (`EventPipeline.remote_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from federation.pdu import Event
from federation.room_state import StateKey
from federation.room_versions import RoomVersion
from homeserver.services.event_commit import BatchCommitter
from homeserver.services.room_batch import BatchApplier, RoomBatch
from homeserver.services.state import RoomStateCache
from homeserver.storage.events import EventsStore

StateIds = Mapping[StateKey, str]
# State groups allocated per event of a batch when the batch size is not known in advance.
GROUPS_PER_EVENT: Final = 2


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """A received event and the verdict of the S2S receipt checks (issue 5)."""

    event: Event
    # State before the event (required unless `outlier`).
    state_before: Mapping[StateKey, str] | None
    rejected_reason: str | None = None
    soft_failed: bool = False
    outlier: bool = False
    # An invite (or its rejection) for a local user in a room we are not in: an outlier that
    # still sets the user's membership for /sync.
    out_of_band_membership: bool = False


class RemoteBatch:
    """Events of one room taken in order; the room as it will be after them; one commit."""

    def __init__(
        self,
        *,
        batch: RoomBatch,
        applier: BatchApplier,
        committer: BatchCommitter,
        with_children: set[str],
        late_redactions: dict[str, str],
        backfilled: bool,
    ) -> None:
        self._batch = batch
        self._applier = applier
        self._committer = committer
        self._with_children = with_children
        self._late_redactions = late_redactions
        self._backfilled = backfilled
        self._rejected: dict[str, bool] = {}
        self._committed = False

    @property
    def room_version(self) -> RoomVersion:
        return self._batch.room_version

    @property
    def current_state(self) -> StateIds:
        """The room's current state after the events taken so far (S2S step 6 reads it)."""
        return self._batch.state

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._rejected

    def is_rejected(self, event_id: str) -> bool | None:
        """Whether an event of this batch was rejected; None if it is not in the batch."""
        return self._rejected.get(event_id)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """Events of this batch or stored ones (through the cache), by ID."""
        return await self._applier.get_events(self._batch, event_ids)

    async def state_after(self, event_id: str) -> StateIds | None:
        """The state after an event of this batch or a stored one; None for outliers and
        unknown events (S2S step 5 reads the states after the prev events)."""
        group = await self._applier.group_after(self._batch, event_id)
        return None if group is None else await self._applier.group_state(self._batch, group)

    async def add(self, item: RemoteEvent) -> None:
        """Take the next event: its state groups, and the room's extremities and state after
        it. If this raises, the batch must be dropped (it may be half-applied)."""
        event = item.event
        if event.room_id != self._batch.room_id:
            raise ValueError("a remote batch takes events of its own room only")
        if not item.outlier and item.state_before is None:
            raise ValueError(f"{event.event_id}: state_before is required")
        await self._applier.add_event(
            self._batch,
            event,
            item.state_before or {},
            None,
            outlier=item.outlier,
            soft_failed=item.soft_failed,
            rejection_reason=item.rejected_reason,
            has_stored_child=event.event_id in self._with_children,
            out_of_band_membership=item.out_of_band_membership,
            backfilled=self._backfilled,
        )
        self._rejected[event.event_id] = item.rejected_reason is not None

    async def commit(self) -> dict[str, int]:
        """Write every event taken, in one transaction; then memory catches up, waiters wake
        and the `on_persisted` hooks get the visible ones. Returns stream positions by ID."""
        if self._committed:
            raise RuntimeError("a remote batch is committed once")
        self._committed = True
        if not self._batch.to_persist:
            return {}
        await self._applier.apply_late_redactions(self._batch, self._late_redactions)
        if self._backfilled:
            persisted = await self._committer.commit_backfilled(self._batch)
        else:
            persisted = await self._committer.commit(self._batch)
            await self._committer.run_hooks([p.event for p in persisted if p.visible_to_clients])
        return {p.event.event_id: p.stream_ordering for p in persisted}


async def open_remote_batch(
    *,
    state: RoomStateCache,
    events: EventsStore,
    applier: BatchApplier,
    committer: BatchCommitter,
    room_id: str,
    room_version: RoomVersion,
    event_ids: Iterable[str],
    backfilled: bool = False,
) -> RemoteBatch:
    """A batch on top of the room's current snapshot (a new room if this server has none).

    `event_ids`: the events that may be added; what the batch must know of them up front
    (stored children, redactions waiting for them) is read in two queries. The caller holds
    the room's write lock until the batch is committed or dropped.
    """
    ids = list(event_ids)
    room = await state.get_room_state(room_id)
    if room is not None and room.room_version != room_version:
        raise ValueError(f"{room_id} is a room of version {room.room_version.identifier}")
    if backfilled and room is None:
        raise ValueError(f"cannot backfill {room_id}: this server is not in the room")
    batch = RoomBatch.from_room(room) if room else RoomBatch.new(room_id, room_version, False)
    batch.state_group_hint = GROUPS_PER_EVENT * max(len(ids), 1)
    with_children = await events.get_events_with_children(ids) if ids else set()
    late_redactions = await events.get_pending_redactions(ids) if ids else {}
    return RemoteBatch(
        batch=batch,
        applier=applier,
        committer=committer,
        with_children=with_children,
        late_redactions=late_redactions,
        backfilled=backfilled,
    )
