"""Wake long-polling readers (/sync, /events) the moment something they can see is persisted.

A waiter is one future registered under each room it watches and under its user (for
membership changes that bring a new room into view). `notify_new_event` resolves only the
waiters of that room and of the affected users: no polling loop, no scan of all waiters.

Notifications wait for the stream tracker: an event at position 11 is announced only once
`current_position` reaches 11 (nothing below it still in flight), so a woken reader always finds
the event when it reads up to the position it is given.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from homeserver.services.streams import StreamTracker


@dataclass(order=True, slots=True)
class _Pending:
    position: int
    room_id: str = field(compare=False)
    user_ids: tuple[str, ...] = field(compare=False)


class Notifier:
    """Stream positions and the readers waiting for them."""

    def __init__(self, tracker: StreamTracker) -> None:
        self._tracker = tracker
        # Latest announced position per room and per user: lets a reader whose token is
        # already behind return at once instead of waiting.
        self._room_positions: dict[str, int] = {}
        self._user_positions: dict[str, int] = {}
        # Latest position per room that affected a user (membership events): lets /sync skip
        # the device-list delta when nobody joined or left any of the reader's rooms.
        self._room_member_positions: dict[str, int] = {}
        self._room_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._user_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._pending: list[_Pending] = []
        self._commit_listeners: list[Callable[[Any], None]] = []
        # Announcements start at construction (process start): for an older token we do not
        # know what changed in between, so the reader must look in storage rather than wait.
        self._start_position = tracker.current_position
        tracker.add_listener(self._on_advance)

    @property
    def current_position(self) -> int:
        return self._tracker.current_position

    def add_commit_listener(self, listener: Callable[[Any], None]) -> None:
        """Call `listener(batch)` with each committed batch (event stream: a PersistBatch),
        before its positions are announced (homeserver/services/sync_recent.py)."""
        self._commit_listeners.append(listener)

    def record_committed(self, batch: Any) -> None:
        """The writer committed `batch`; called before the tracker passes its positions."""
        for listener in self._commit_listeners:
            listener(batch)

    def notify_new_event(
        self, room_id: str, position: int, user_ids_affected: Iterable[str] = ()
    ) -> None:
        """An event of `room_id` at `position` was committed; `user_ids_affected` are users whose
        set of visible rooms may have changed (the target of a membership event)."""
        heapq.heappush(self._pending, _Pending(position, room_id, tuple(user_ids_affected)))
        self._flush(self._tracker.current_position)

    def _on_advance(self, position: int) -> None:
        self._flush(position)

    def _flush(self, up_to: int) -> None:
        while self._pending and self._pending[0].position <= up_to:
            item = heapq.heappop(self._pending)
            self._announce(item)

    def _announce(self, item: _Pending) -> None:
        if item.position > self._room_positions.get(item.room_id, 0):
            self._room_positions[item.room_id] = item.position
        _wake(self._room_waiters.pop(item.room_id, ()))
        if item.user_ids and item.position > self._room_member_positions.get(item.room_id, 0):
            self._room_member_positions[item.room_id] = item.position
        for user_id in item.user_ids:
            if item.position > self._user_positions.get(user_id, 0):
                self._user_positions[user_id] = item.position
            _wake(self._user_waiters.pop(user_id, ()))

    def has_new_events(self, user_id: str, room_ids: Collection[str], from_position: int) -> bool:
        """Whether anything visible to this reader may have happened after `from_position`."""
        if from_position < self._start_position:
            return True
        if self._user_positions.get(user_id, 0) > from_position:
            return True
        return any(self._room_positions.get(r, 0) > from_position for r in room_ids)

    def rooms_announced_after(
        self, room_ids: Collection[str], from_position: int
    ) -> list[str] | None:
        """The rooms of `room_ids` with an announcement after `from_position`: a superset of
        those with new events. None when `from_position` predates this process (unknown)."""
        if from_position < self._start_position:
            return None
        return [r for r in room_ids if self._room_positions.get(r, 0) > from_position]

    def users_affected_after(
        self, user_id: str, room_ids: Collection[str], from_position: int
    ) -> bool:
        """Whether an announcement after `from_position` affected `user_id` or any user of
        `room_ids` (a membership change); True when `from_position` predates this process."""
        if from_position < self._start_position:
            return True
        if self._user_positions.get(user_id, 0) > from_position:
            return True
        return any(self._room_member_positions.get(r, 0) > from_position for r in room_ids)

    async def wait_for_events(
        self, user_id: str, room_ids: Collection[str], from_position: int, timeout_ms: int
    ) -> int:
        """Wait until an event in `room_ids` (or affecting `user_id`) is announced after
        `from_position`, or `timeout_ms` passes; return the position to read up to."""
        if timeout_ms <= 0 or self.has_new_events(user_id, room_ids, from_position):
            return self._tracker.current_position
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.watch(waiter, user_id, room_ids)
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                await waiter
        except TimeoutError:
            pass
        finally:
            self.unwatch(waiter, user_id, room_ids)
        return self._tracker.current_position

    def watch(self, waiter: asyncio.Future[None], user_id: str, room_ids: Collection[str]) -> None:
        """Resolve `waiter` at the next announcement for `room_ids` or `user_id` (the caller
        checks `has_new_events` first, without awaiting in between, and calls `unwatch`)."""
        self._user_waiters.setdefault(user_id, set()).add(waiter)
        for room_id in room_ids:
            self._room_waiters.setdefault(room_id, set()).add(waiter)

    def unwatch(
        self, waiter: asyncio.Future[None], user_id: str, room_ids: Collection[str]
    ) -> None:
        _discard(self._user_waiters, user_id, waiter)
        for room_id in room_ids:
            _discard(self._room_waiters, room_id, waiter)

    def waiter_count(self, room_id: str) -> int:
        """How many readers wait on `room_id` (diagnostics and tests)."""
        return len(self._room_waiters.get(room_id, ()))


def _wake(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _discard(
    table: dict[str, set[asyncio.Future[None]]], key: str, waiter: asyncio.Future[None]
) -> None:
    waiters = table.get(key)
    if waiters is not None:
        waiters.discard(waiter)
        if not waiters:
            del table[key]
