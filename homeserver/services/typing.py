"""Typing notifications (C-S "Typing Notifications"): in memory, each with a timeout.

The server "does not remember users who are not currently typing": each room holds the users
typing now and when that stops. Every change (start, stop, expiry) takes a position in the
typing stream and wakes the room's /sync readers, who get the room's whole `m.typing` list.
Listeners hear of every start (renewals included, so other servers keep the user typing) and
every stop or expiry, for any user; the federation sender forwards local users' ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final

from homeserver.services.sync_streams import AuxStream

logger = logging.getLogger(__name__)

# Clients re-send every 20–30 s; a longer timeout is cut to this, so a client that died while
# typing stops showing as typing soon.
MAX_TYPING_TIMEOUT_MS: Final = 120_000
DEFAULT_TYPING_TIMEOUT_MS: Final = 30_000

# `(room_id, user_id, typing, timeout_ms)`; timeout_ms is 0 when typing stops.
TypingListener = Callable[[str, str, bool, int], Awaitable[None]]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class TypingService:
    def __init__(self, stream: AuxStream, *, clock: Callable[[], int] = _now_ms) -> None:
        self._stream = stream
        self._clock = clock
        # room_id → user_id → when their typing ends (clock ms)
        self._typing: dict[str, dict[str, int]] = {}
        # room_id → typing stream position of its last change
        self._changed_at: dict[str, int] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._expiries: set[asyncio.Task[None]] = set()
        self._listeners: list[TypingListener] = []

    def add_listener(self, listener: TypingListener) -> None:
        self._listeners.append(listener)

    async def _tell_listeners(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int
    ) -> None:
        for listener in self._listeners:
            try:
                await listener(room_id, user_id, typing, timeout_ms)
            except Exception:  # typing is best effort beyond this server
                logger.exception("typing listener failed for %s in %s", user_id, room_id)

    @property
    def stream(self) -> AuxStream:
        return self._stream

    async def set_typing(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None:
        """Mark `user_id` as typing in `room_id` for `timeout_ms`, or as not typing.

        The caller checks that the user is joined to the room.
        """
        key = (room_id, user_id)
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()
        room = self._typing.get(room_id, {})
        if not typing:
            if user_id in room:
                await self._change(room_id, lambda users: users.pop(user_id, None))
                await self._tell_listeners(room_id, user_id, False, 0)
            return
        timeout = min(max(timeout_ms or DEFAULT_TYPING_TIMEOUT_MS, 0), MAX_TYPING_TIMEOUT_MS)
        until = self._clock() + timeout
        was_typing = user_id in room
        if was_typing:
            room[user_id] = until  # still typing: no change anyone needs to hear about
        else:
            await self._change(room_id, lambda users: users.__setitem__(user_id, until))
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(timeout / 1000, self._expire, room_id, user_id)
        await self._tell_listeners(room_id, user_id, True, timeout)

    def _expire(self, room_id: str, user_id: str) -> None:
        self._timers.pop((room_id, user_id), None)
        until = self._typing.get(room_id, {}).get(user_id)
        if until is not None and until <= self._clock():
            task = asyncio.ensure_future(self.set_typing(room_id, user_id, False))
            self._expiries.add(task)
            task.add_done_callback(self._expiries.discard)

    async def _change(self, room_id: str, mutate: Callable[[dict[str, int]], Any]) -> None:
        async with self._stream.write(room_id) as position:
            users = self._typing.setdefault(room_id, {})
            mutate(users)
            if not users:
                del self._typing[room_id]
            self._changed_at[room_id] = position

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, {}))

    def rooms_changed(self, room_ids: Collection[str], since: int, until: int) -> list[str]:
        """The rooms among `room_ids` whose typing list changed in `(since, until]`; every room
        with someone typing when `since` is 0 (initial sync)."""
        if since == 0:
            return [r for r in room_ids if r in self._typing]
        return [r for r in room_ids if since < self._changed_at.get(r, 0) <= until]

    def typing_event(self, room_id: str) -> dict[str, Any]:
        """The room's `m.typing` ephemeral event."""
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
