"""The latest client-visible events of each room, kept in memory as they are committed, so a
woken /sync serves its timeline without reading them back from the database.

The event commit (homeserver/services/event_commit.py) hands every committed batch to
`RecentEvents.record` before the stream tracker passes its positions, so by the time a reader
may read up to a position, every event of a recorded room at or below it is here. A room is
covered from the position where recording started (or where old events were dropped); a range
that starts below it is unknown (`None`) and the caller reads the database instead.

Rows carry what the timeline needs besides the event: the transaction ID of the sending device
(C-S "Transaction identifiers") and the redaction that applies to the event (C-S "Redactions"),
updated when a later batch applies a redaction to an event still kept here.

Memory: rows hold the `Event` objects themselves (2–2.7 KB each, docs/memory.md), which stay
alive here after the event cache drops them, so the store keeps at most `max_events` events in
all rooms together. Past that, the least recently written rooms lose all their rows: such a
room stays known, covered from its newest dropped event on, so a woken /sync can still learn
from memory that it has had nothing since, while a range reaching below it goes to the database.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from federation.pdu import Event
from homeserver.storage.event_rows import EventRow, EventToPersist, PersistBatch

# Events kept per room, rooms kept (least recently written dropped first), and events kept in
# all rooms together (least recently written rooms emptied first): ~20–27 MB when full.
EVENTS_PER_ROOM: Final = 100
MAX_ROOMS: Final = 2_000
MAX_EVENTS: Final = 10_000
CREATE: Final = "m.room.create"


@dataclass(slots=True)
class _RoomEvents:
    # Every client-visible event of the room after `covered_from` is in `rows`.
    covered_from: int
    rows: list[EventRow] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


class RecentEvents:
    def __init__(
        self,
        current_position: Callable[[], int],
        *,
        events_per_room: int = EVENTS_PER_ROOM,
        max_rooms: int = MAX_ROOMS,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self._current_position = current_position
        self._per_room = events_per_room
        self._max_rooms = max_rooms
        self._max_events = max_events
        self._rooms: OrderedDict[str, _RoomEvents] = OrderedDict()
        # The rooms that hold rows, least recently written first, and their rows in all.
        self._holding: OrderedDict[str, _RoomEvents] = OrderedDict()
        self._total = 0

    @property
    def event_count(self) -> int:
        """Events kept in all rooms."""
        return self._total

    def record(self, batch: PersistBatch) -> None:
        """A batch was committed (called before the tracker passes its positions)."""
        room = self._rooms.get(batch.room_id)
        if room is None:
            # Positions up to the tracker's current one are committed and were never recorded
            # here: the room is covered only after it.
            # A batch that starts the room (its create event, the root of every other one)
            # covers it from the beginning.
            starts_room = any(
                item.visible_to_clients and item.event.type == CREATE and item.event.state_key == ""
                for item in batch.events
            )
            room = _RoomEvents(covered_from=0 if starts_room else self._current_position())
            self._rooms[batch.room_id] = room
            if len(self._rooms) > self._max_rooms:
                forgotten_id, forgotten = self._rooms.popitem(last=False)
                if self._holding.pop(forgotten_id, None) is not None:
                    self._total -= len(forgotten.rows)
        else:
            self._rooms.move_to_end(batch.room_id)
        kept_before = len(room.rows)
        applied = batch.redactions_applied
        for item in batch.events:
            if item.visible_to_clients and item.stream_ordering > room.covered_from:
                _insert(room, _row(item, applied.get(item.event.event_id)))
        if applied:
            _mark_redacted(room, applied)
        _drop_oldest(room, len(room.rows) - self._per_room)
        self._total += len(room.rows) - kept_before
        if room.rows:
            self._holding[batch.room_id] = room
            self._holding.move_to_end(batch.room_id)
        self._keep_within_budget()

    def _keep_within_budget(self) -> None:
        """Empty the least recently written rooms while more than `max_events` are kept; the
        room just written, when it is the last one holding rows, loses its oldest rows only."""
        while self._total > self._max_events:
            room_id, room = next(iter(self._holding.items()))
            count = len(room.rows)
            if len(self._holding) == 1:
                count = self._total - self._max_events
            _drop_oldest(room, count)
            self._total -= count
            if not room.rows:
                del self._holding[room_id]

    def events_in_range(
        self, room_id: str, lower: int, upper: int, limit: int
    ) -> list[EventRow] | None:
        """The newest `limit` client-visible events with `lower < stream_ordering <= upper`,
        oldest first; None when the room is not covered from `lower` on."""
        room = self._rooms.get(room_id)
        if room is None or lower < room.covered_from:
            return None
        start = bisect.bisect_right(room.positions, lower)
        end = bisect.bisect_right(room.positions, upper)
        if limit <= 0:
            return []
        return room.rows[max(start, end - limit) : end]

    def has_events(self, room_id: str, lower: int, upper: int) -> bool | None:
        """Whether the room has client-visible events in `(lower, upper]`; None if unknown."""
        rows = self.events_in_range(room_id, lower, upper, 1)
        return None if rows is None else bool(rows)

    def positions_of(self, events: Iterable[Event]) -> dict[str, int]:
        """Stream positions of those `events` kept here (newest are found first)."""
        found: dict[str, int] = {}
        for event in events:
            room = self._rooms.get(event.room_id)
            if room is None:
                continue
            for row in reversed(room.rows):
                if row.event.event_id == event.event_id:
                    found[event.event_id] = row.stream_ordering
                    break
        return found


def _row(item: EventToPersist, redacted_because: str | None) -> EventRow:
    txn = item.txn
    return EventRow(
        event=item.event,
        stream_ordering=item.stream_ordering,
        outlier=False,
        soft_failed=False,
        rejection_reason=None,
        redacted_because=redacted_because,
        txn_device_id=txn.device_id if txn is not None else None,
        txn_id=txn.txn_id if txn is not None else None,
    )


def _drop_oldest(room: _RoomEvents, count: int) -> None:
    """Forget the room's `count` oldest rows; it stays covered only after the newest of them."""
    if count <= 0:
        return
    room.covered_from = room.rows[count - 1].stream_ordering
    del room.rows[:count]
    del room.positions[:count]


def _insert(room: _RoomEvents, row: EventRow) -> None:
    index = bisect.bisect_right(room.positions, row.stream_ordering)
    room.positions.insert(index, row.stream_ordering)
    room.rows.insert(index, row)


def _mark_redacted(room: _RoomEvents, applied: Mapping[str, str]) -> None:
    """Targets kept here get the redaction that now applies to them (the first one wins, as in
    storage: `redacted_because` is set only while it is NULL)."""
    for index, row in enumerate(room.rows):
        redaction_id = applied.get(row.event.event_id)
        if redaction_id is not None and row.redacted_because is None:
            room.rows[index] = replace(row, redacted_because=redaction_id)
