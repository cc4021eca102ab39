"""Presence (C-S "Presence", S2S "Presence"): each user's state, kept in memory.

A user is `online`, `unavailable` or `offline`, with an optional status message and the time
of their last pro-active event ("Last active ago"). Local users become `online` by syncing
(`set_presence`, sync.yaml), by sending events or by setting it (PUT /presence/…/status); the
idle timeout makes them `unavailable`, and no /sync for a while makes them `offline`. Remote
users' states come in `m.presence` EDUs.

Every change takes a position in the presence stream (an in-memory `AuxStream`; its positions
start at the process's start time in milliseconds, so a token from before a restart is older
than anything this process knows and reads as "send everyone's current state") and wakes the
/sync readers of every room the user is in. Local users' last state is saved in Postgres so a
restart keeps it; listeners (the federation forwarder) hear of every local change.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, Final

from federation.edus import PresenceUpdate
from federation.ids import server_name_of
from federation.pdu import Event
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.presence import PresenceStore, StoredPresence

logger = logging.getLogger(__name__)

ONLINE: Final = "online"
UNAVAILABLE: Final = "unavailable"
OFFLINE: Final = "offline"
PRESENCE_STATES: Final = frozenset({ONLINE, UNAVAILABLE, OFFLINE})
# C-S "Last active ago": while a user was active this recently they are `currently_active`,
# and further activity updates their last active time without a new presence update.
CURRENTLY_ACTIVE_MS: Final = 60_000
# A remote user we hear nothing about for this long is taken to be offline.
REMOTE_TIMEOUT_MS: Final = 30 * 60_000
# Changes kept for incremental /sync; an older `since` gets everyone's current state.
MAX_LOG: Final = 10_000

# `(new state, rooms the user is joined to)`, for every change of a local user.
PresenceListener = Callable[["UserPresence", Collection[str]], Awaitable[None]]
RoomsOfUser = Callable[[str], Awaitable[Collection[str]]]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class UserPresence:
    user_id: str
    presence: str = OFFLINE
    status_msg: str | None = None
    last_active_ts: int = 0  # 0: never seen active
    # `unavailable` set by the idle timeout or a syncing client, not by the user: syncing
    # with set_presence=online brings them back online.
    idle: bool = False
    # When this state was last set or confirmed (remote users time out from it).
    updated_ts: int = 0

    def currently_active(self, now_ms: int) -> bool:
        return self.presence == ONLINE and now_ms - self.last_active_ts < CURRENTLY_ACTIVE_MS

    def content(self, now_ms: int) -> dict[str, Any]:
        """The `m.presence` event content (C-S "m.presence"; the GET /status body)."""
        content: dict[str, Any] = {"presence": self.presence}
        if self.last_active_ts:
            content["last_active_ago"] = max(0, now_ms - self.last_active_ts)
        if self.status_msg is not None:
            content["status_msg"] = self.status_msg
        if self.presence == ONLINE:
            content["currently_active"] = self.currently_active(now_ms)
        return content


class PresenceService:
    def __init__(
        self,
        *,
        store: PresenceStore,
        stream: AuxStream,
        rooms_of_user: RoomsOfUser,
        server_name: str,
        idle_timeout_ms: int = 5 * 60_000,
        offline_timeout_ms: int = 30_000,
        sweep_interval_s: float = 5.0,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._stream = stream
        self._rooms_of_user = rooms_of_user
        self._server_name = server_name
        self._idle_timeout_ms = idle_timeout_ms
        self._offline_timeout_ms = offline_timeout_ms
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._states: dict[str, UserPresence] = {}
        # (position, user_id) of every change in order; positions at or below `_log_start`
        # were dropped (or came before this process).
        self._log: list[tuple[int, str]] = []
        self._log_start = stream.current_position
        # user → the rooms they were joined to at their last change (who may see it).
        self._rooms_at_change: dict[str, frozenset[str]] = {}
        self._syncing: dict[str, int] = {}  # local user → /sync requests in progress
        self._last_sync: dict[str, int] = {}  # local user → when a /sync last ran
        self._listeners: list[PresenceListener] = []
        self._started_ms = clock()
        self._sweeper: asyncio.Task[None] | None = None

    @staticmethod
    def new_stream(clock: Callable[[], int] = _now_ms) -> AuxStream:
        """The in-memory presence stream, starting at the current time in milliseconds."""
        start = clock()
        counter = iter(range(start + 1, 2**63))

        async def allocate(count: int) -> list[int]:
            return [next(counter) for _ in range(count)]

        return AuxStream("presence", start, allocate)

    @property
    def stream(self) -> AuxStream:
        return self._stream

    def add_listener(self, listener: PresenceListener) -> None:
        self._listeners.append(listener)

    def is_local(self, user_id: str) -> bool:
        return server_name_of(user_id) == self._server_name

    async def start(self) -> None:
        """Load local users' saved states and start the timeout sweeper."""
        for stored in await self._store.load_all():
            self._states[stored.user_id] = UserPresence(
                stored.user_id,
                stored.presence,
                stored.status_msg,
                stored.last_active_ts,
                updated_ts=self._started_ms,
            )
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._sweeper

    # --- reads --------------------------------------------------------------------------

    def get(self, user_id: str) -> UserPresence | None:
        return self._states.get(user_id)

    def now_ms(self) -> int:
        return self._clock()

    async def may_see(self, viewer: str, user_id: str) -> bool:
        """C-S "Presence": presence is published to the users who share a room with them."""
        if viewer == user_id:
            return True
        viewer_rooms = set(await self._rooms_of_user(viewer))
        return not viewer_rooms.isdisjoint(await self._rooms_of_user(user_id))

    def rooms_at_change(self, user_id: str) -> frozenset[str]:
        """The rooms `user_id` was joined to when their presence last changed."""
        return self._rooms_at_change.get(user_id, frozenset())

    def changed_users(self, since: int, until: int) -> list[str] | None:
        """Users whose presence changed in `(since, until]`; None when `since` is older than
        the changes kept (the caller then sends every current state)."""
        if since < self._log_start:
            return None
        start = bisect.bisect_right(self._log, (since, "\U0010ffff"))
        changed = [user for position, user in self._log[start:] if position <= until]
        return list(dict.fromkeys(changed))

    # --- local users --------------------------------------------------------------------

    async def set_status(
        self, user_id: str, presence: str, status_msg: str | None, *, keep_status: bool
    ) -> None:
        """PUT /presence/{userId}/status: "the activity time is updated to reflect that
        activity". Without `status_msg` in the body the current message stays."""
        now = self._clock()
        self._last_sync[user_id] = now
        current = self._states.get(user_id, UserPresence(user_id))
        new = UserPresence(
            user_id,
            presence,
            current.status_msg if keep_status else status_msg,
            last_active_ts=now,
            updated_ts=now,
        )
        await self._change(new)

    @asynccontextmanager
    async def syncing(self, user_id: str, set_presence: str | None) -> AsyncIterator[None]:
        """Around one /sync (sync.yaml `set_presence`): omitted or `online` marks the user
        online, `unavailable` idle, `offline` leaves the state alone. A user with no /sync
        running for the offline timeout goes offline."""
        set_presence = set_presence or ONLINE
        counted = set_presence != OFFLINE
        if counted:
            self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
            self._last_sync[user_id] = self._clock()
        try:
            await self._on_sync(user_id, set_presence)
            yield
        finally:
            if counted:
                self._last_sync[user_id] = self._clock()
                left = self._syncing.get(user_id, 1) - 1
                if left:
                    self._syncing[user_id] = left
                else:
                    self._syncing.pop(user_id, None)

    async def _on_sync(self, user_id: str, set_presence: str) -> None:
        current = self._states.get(user_id, UserPresence(user_id))
        now = self._clock()
        if set_presence == ONLINE and (
            current.presence == OFFLINE or (current.presence == UNAVAILABLE and current.idle)
        ):
            await self._change(replace(current, presence=ONLINE, idle=False, last_active_ts=now))
        elif set_presence == UNAVAILABLE and current.presence != UNAVAILABLE:
            await self._change(replace(current, presence=UNAVAILABLE, idle=True))

    async def on_events_persisted(self, events: Sequence[Event]) -> None:
        """Sending an event is a pro-active event (C-S "Last active ago"): the sender is
        active now and, whatever their state, online ("Idle timeout")."""
        for sender in dict.fromkeys(e.sender for e in events if self.is_local(e.sender)):
            await self.bump_active(sender)

    async def bump_active(self, user_id: str) -> None:
        now = self._clock()
        current = self._states.get(user_id, UserPresence(user_id))
        if current.currently_active(now):
            # currently_active already tells clients so: no update needed (C-S "Last active ago")
            self._states[user_id] = replace(current, last_active_ts=now, updated_ts=now)
            return
        await self._change(replace(current, presence=ONLINE, idle=False, last_active_ts=now))

    # --- remote users -------------------------------------------------------------------

    async def on_remote_update(self, update: PresenceUpdate) -> None:
        """An `m.presence` EDU entry (already checked to be about the origin's own user).
        Users in no room known here are ignored: nobody here may see them."""
        if self.is_local(update.user_id):
            return
        rooms = await self._rooms_of_user(update.user_id)
        if not rooms:
            return
        now = self._clock()
        last_active_ts = 0
        if update.currently_active:
            last_active_ts = now
        elif update.last_active_ago is not None:
            last_active_ts = max(1, now - max(0, update.last_active_ago))
        new = UserPresence(
            update.user_id,
            update.presence,
            update.status_msg,
            last_active_ts=last_active_ts,
            updated_ts=now,
        )
        await self._change(new, rooms=rooms)

    # --- changes and timeouts -----------------------------------------------------------

    async def _change(self, new: UserPresence, rooms: Collection[str] | None = None) -> None:
        """Record `new`, announce it to the readers of the user's rooms, save and forward it
        (local users)."""
        user_id, now = new.user_id, self._clock()
        new = replace(new, updated_ts=now)
        if rooms is None:
            rooms = await self._rooms_of_user(user_id)
        async with self._stream.write(None, (user_id,)) as position:
            self._states[user_id] = new
            self._rooms_at_change[user_id] = frozenset(rooms)
            bisect.insort(self._log, (position, user_id))
            for room_id in rooms:
                self._stream.notifier.notify_new_event(room_id, position)
        if len(self._log) > MAX_LOG:
            dropped = self._log[: len(self._log) - MAX_LOG]
            del self._log[: len(dropped)]
            self._log_start = dropped[-1][0]
        if not self.is_local(user_id):
            return
        await self._store.save(
            StoredPresence(user_id, new.presence, new.status_msg, new.last_active_ts), now
        )
        for listener in self._listeners:
            try:
                await listener(new, rooms)
            except Exception:  # presence beyond this server is best effort
                logger.exception("presence listener failed for %s", user_id)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("presence timeout sweep failed")

    async def sweep(self) -> None:
        """C-S "Idle timeout": online users inactive for the idle timeout become unavailable;
        local users with no /sync for the offline timeout, and remote users not heard of for
        REMOTE_TIMEOUT_MS, become offline."""
        now = self._clock()
        for state in list(self._states.values()):
            if state.presence == OFFLINE:
                continue
            if not self.is_local(state.user_id):
                if now - state.updated_ts > REMOTE_TIMEOUT_MS:
                    await self._change(replace(state, presence=OFFLINE))
                continue
            last_sync = self._last_sync.get(state.user_id, self._started_ms)
            if state.user_id not in self._syncing and now - last_sync > self._offline_timeout_ms:
                await self._change(replace(state, presence=OFFLINE, idle=False))
            elif state.presence == ONLINE and now - state.last_active_ts > self._idle_timeout_ms:
                await self._change(replace(state, presence=UNAVAILABLE, idle=True))
