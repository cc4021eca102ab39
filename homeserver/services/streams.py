"""Stream positions: which events a reader may see without ever skipping one.

Every persisted event gets a `stream_ordering` from the PostgreSQL sequence `events_stream_seq`
(homeserver/storage/events.py). Transactions of different rooms run concurrently, so position 11
may commit before position 10. A /sync that answered "up to 11" at that moment would never
return event 10. `StreamTracker.current_position` is therefore the highest position with nothing
still in flight at or below it; readers read up to it and hand it out as their token.

Positions live in the database, so a token stays valid across restarts: at start-up the tracker
begins at the highest stored position.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager

AdvanceListener = Callable[[int], None]


class StreamTracker:
    """In-process tracker of allocated-but-unfinished stream positions (one per stream)."""

    def __init__(self, name: str, start_position: int) -> None:
        self.name = name
        self._current = start_position
        # Allocated positions whose transactions have not finished (min-heap + membership set).
        self._in_flight: list[int] = []
        self._in_flight_set: set[int] = set()
        self._highest_seen = start_position
        # Allocations requested from the database but not yet answered: their numbers are
        # unknown and may be lower than numbers already seen, so the position must not move.
        self._pending_allocations = 0
        self._listeners: list[AdvanceListener] = []

    @property
    def current_position(self) -> int:
        """Highest position P such that every event with a position ≤ P has been persisted
        (or its transaction abandoned)."""
        return self._current

    def add_listener(self, listener: AdvanceListener) -> None:
        """Call `listener(new_position)` whenever `current_position` advances."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def allocate(
        self, allocator: Callable[[int], Awaitable[Sequence[int]]], count: int
    ) -> AsyncIterator[list[int]]:
        """Allocate `count` positions with `allocator` and hold them in flight for the block.

        The block persists them; on exit, success or failure, the positions count as finished
        (a failed transaction leaves gaps, which readers never notice).
        """
        self._pending_allocations += 1
        try:
            positions = sorted(await allocator(count))
        except BaseException:
            self._pending_allocations -= 1
            self._advance()
            raise
        for position in positions:
            self._add_in_flight(position)
        self._pending_allocations -= 1
        try:
            yield positions
        finally:
            self._finish(positions)

    def _add_in_flight(self, position: int) -> None:
        if position <= self._current or position in self._in_flight_set:
            raise RuntimeError(f"{self.name}: position {position} allocated twice")
        heapq.heappush(self._in_flight, position)
        self._in_flight_set.add(position)
        self._highest_seen = max(self._highest_seen, position)

    def _finish(self, positions: Sequence[int]) -> None:
        self._in_flight_set.difference_update(positions)
        self._advance()

    def _advance(self) -> None:
        if self._pending_allocations:
            return  # an allocation with an unknown (maybe lower) number is under way
        while self._in_flight and self._in_flight[0] not in self._in_flight_set:
            heapq.heappop(self._in_flight)
        # Everything below the lowest in-flight position is done; without any in flight,
        # everything seen is done.
        limit = self._in_flight[0] - 1 if self._in_flight else self._highest_seen
        new_current = max(self._current, limit)
        if new_current != self._current:
            self._current = new_current
            for listener in list(self._listeners):
                listener(new_current)

    def in_flight(self) -> Iterator[int]:
        """Positions allocated and not yet finished (for diagnostics and tests)."""
        return iter(sorted(self._in_flight_set))
