"""The streams /sync reads besides room events, and one wait over all of them.

Each stream (typing, receipts, account data, to-device, device lists) is a `StreamTracker`
plus a `Notifier` (homeserver/services/notifier.py), exactly as the event stream is: a writer
allocates a position, persists, and announces it; readers never see a position while a lower
one is still in flight, and a long-poll wakes the moment something it can see is announced —
no polling. `SyncStreams.wait` waits on all streams at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager

from homeserver.services.notifier import Notifier
from homeserver.services.streams import StreamTracker
from homeserver.services.sync_token import SyncToken

Allocator = Callable[[int], Awaitable[Sequence[int]]]


class AuxStream:
    """A non-event stream: positions and the readers waiting for them."""

    def __init__(self, name: str, start_position: int, allocator: Allocator) -> None:
        self.tracker = StreamTracker(name, start_position)
        self.notifier = Notifier(self.tracker)
        self._allocator = allocator

    @staticmethod
    def in_memory(name: str) -> AuxStream:
        """A stream whose positions live only in this process (typing)."""
        counter = itertools.count(1)

        async def allocate(count: int) -> list[int]:
            return [next(counter) for _ in range(count)]

        return AuxStream(name, 0, allocate)

    @property
    def current_position(self) -> int:
        return self.tracker.current_position

    @asynccontextmanager
    async def write(
        self, room_id: str | None = None, user_ids: Collection[str] = ()
    ) -> AsyncIterator[int]:
        """Allocate one position for the block to persist; once the block succeeds, announce it
        to readers of `room_id` and to `user_ids` (private data: no room)."""
        async with self.tracker.allocate(self._allocator, 1) as positions:
            yield positions[0]
            # Announced when the tracker passes the position, i.e. once this block finishes.
            self.notifier.notify_new_event(room_id or "", positions[0], tuple(user_ids))


class SyncStreams:
    """Every stream a /sync token covers."""

    def __init__(
        self,
        events: Notifier,
        *,
        typing: AuxStream,
        receipts: AuxStream,
        account_data: AuxStream,
        to_device: AuxStream,
        device_lists: AuxStream,
    ) -> None:
        self.events = events
        self.typing = typing
        self.receipts = receipts
        self.account_data = account_data
        self.to_device = to_device
        self.device_lists = device_lists
        # In-memory presence; set by homeserver/services/presence_setup.py when enabled.
        self.presence: AuxStream | None = None

    def current_token(self) -> SyncToken:
        return SyncToken(
            events=self.events.current_position,
            typing=self.typing.current_position,
            receipts=self.receipts.current_position,
            account_data=self.account_data.current_position,
            to_device=self.to_device.current_position,
            device_lists=self.device_lists.current_position,
            presence=self.presence.current_position if self.presence is not None else 0,
        )

    def _waits(self, since: SyncToken) -> list[tuple[Notifier, int]]:
        presence = [] if self.presence is None else [(self.presence.notifier, since.presence)]
        return [
            *presence,
            (self.events, since.events),
            (self.typing.notifier, since.typing),
            (self.receipts.notifier, since.receipts),
            (self.account_data.notifier, since.account_data),
            (self.to_device.notifier, since.to_device),
            (self.device_lists.notifier, since.device_lists),
        ]

    def has_new(self, user_id: str, room_ids: Collection[str], since: SyncToken) -> bool:
        return any(
            notifier.has_new_events(user_id, room_ids, position)
            for notifier, position in self._waits(since)
        )

    async def wait(
        self, user_id: str, room_ids: Collection[str], since: SyncToken, timeout_ms: int
    ) -> SyncToken:
        """Wait until any stream has something for this reader after `since`, or `timeout_ms`
        passes; return the token to read up to."""
        if timeout_ms > 0 and not self.has_new(user_id, room_ids, since):
            # One future watched by every stream's notifier (no task per stream): checking
            # and registering happen without an await in between, so nothing is missed.
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            notifiers = [notifier for notifier, _ in self._waits(since)]
            for notifier in notifiers:
                notifier.watch(waiter, user_id, room_ids)
            try:
                async with asyncio.timeout(timeout_ms / 1000):
                    await waiter
            except TimeoutError:
                pass
            finally:
                for notifier in notifiers:
                    notifier.unwatch(waiter, user_id, room_ids)
        return self.current_token()
