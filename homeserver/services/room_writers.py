"""Per-room write serialisation with group commit.

GUIDE.md "Per-room `asyncio.Lock` for writes; reads never take it." Local sends queue up per
room; one drainer task per busy room takes up to `max_batch` queued requests at a time and
hands them, under the room's lock, to the pipeline, which commits them in one transaction.
Remote events take the same lock through `exclusive`. The drainer is a task of its own, so a
client that disconnects never aborts a batch that carries other clients' events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(slots=True)
class _Room(Generic[R]):
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queue: list[R] = field(default_factory=list)
    drainer: asyncio.Task[None] | None = None
    users: int = 0  # drainer and `exclusive` holders, so an idle entry can be dropped


class RoomWriters(Generic[R]):
    def __init__(
        self,
        process: Callable[[str, list[R]], Awaitable[None]],
        fail: Callable[[list[R], BaseException], None],
        max_batch: int,
    ) -> None:
        """`process(room_id, requests)` runs under the room lock; if it raises,
        `fail(requests, error)` must answer the requests it left unanswered."""
        self._process = process
        self._fail = fail
        self._max_batch = max_batch
        self._rooms: dict[str, _Room[R]] = {}

    def submit(self, room_id: str, request: R) -> None:
        """Queue `request`; it is processed with the others queued for the room meanwhile."""
        room = self._rooms.setdefault(room_id, _Room())
        room.queue.append(request)
        if room.drainer is None:
            room.drainer = asyncio.create_task(self._drain(room_id, room))

    @asynccontextmanager
    async def exclusive(self, room_id: str) -> AsyncIterator[None]:
        """Hold the room's write lock (for events received over federation)."""
        room = self._rooms.setdefault(room_id, _Room())
        room.users += 1
        try:
            async with room.lock:
                yield
        finally:
            room.users -= 1
            self._forget_if_idle(room_id, room)

    async def _drain(self, room_id: str, room: _Room[R]) -> None:
        room.users += 1
        try:
            while room.queue:
                requests = room.queue[: self._max_batch]
                del room.queue[: self._max_batch]
                async with room.lock:
                    try:
                        await self._process(room_id, requests)
                    except BaseException as e:
                        self._fail(requests, e)
                        if not isinstance(e, Exception):
                            raise
        finally:
            room.drainer = None
            room.users -= 1
            self._forget_if_idle(room_id, room)

    def _forget_if_idle(self, room_id: str, room: _Room[R]) -> None:
        idle = room.users == 0 and room.drainer is None and not room.queue
        if idle and not room.lock.locked() and self._rooms.get(room_id) is room:
            del self._rooms[room_id]

    def busy_rooms(self) -> int:
        """Rooms with queued or running writes (diagnostics and tests)."""
        return len(self._rooms)

    async def close(self) -> None:
        """Wait until every queued request has been processed (shutdown)."""
        drainers = [room.drainer for room in self._rooms.values() if room.drainer is not None]
        await asyncio.gather(*drainers, return_exceptions=True)
