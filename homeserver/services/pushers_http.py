"""HTTP pushers: notifications sent to push gateways (push-gateway-api.md "Homeserver
behaviour"; C-S "Push Notifications").

Push evaluation (homeserver/services/push.py) tells `HttpPusherPool.on_notify` about every
`notify` action the moment it is stored; nothing else happens on that path. A dispatcher task
finds the users' http pushers, builds each notification (the full event, or only `event_id`,
`room_id` and `counts` with `format: event_id_only`) and hands it to the pusher's own worker
task, which sends in order and, when the gateway fails, retries with exponential backoff for a
while ("SHOULD retry for a reasonable amount of time using exponential backoff"). A pushkey the
gateway reports `rejected` loses its pusher ("Homeservers must cease sending notification
requests for these pushkeys and remove the associated pushers").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from federation.pdu import Event
from homeserver.services.pushers import HTTP
from homeserver.services.state import RoomStateCache
from homeserver.storage.push_data import PushAction, PushDataStore
from homeserver.storage.pushers import Pusher, PushersStore

logger = logging.getLogger(__name__)

MEMBER: Final = "m.room.member"
# Notifications waiting per pusher while its gateway is failing; the oldest go first.
MAX_PENDING: Final = 100
# Events whose notifications a gateway should deliver without delay.
_HIGH_PRIORITY_TYPES: Final = frozenset({"m.room.message", "m.room.encrypted", "m.call.invite"})


class Gateway(Protocol):
    """homeserver/services/pushers_gateway.py `GatewayClient`."""

    async def notify(self, url: str, body: Mapping[str, Any]) -> list[str]: ...

    async def close(self) -> None: ...


class RoomsOfUser(Protocol):
    async def get_rooms_for_user(self, user_id: str) -> Collection[str]: ...


@dataclass(frozen=True, slots=True)
class EventDetails:
    """What the full notification format says about the room and the sender."""

    sender_display_name: str | None
    room_name: str | None
    room_alias: str | None


def tweaks_of(actions: Sequence[Any]) -> dict[str, Any]:
    """C-S "Actions": `set_tweak` actions; `highlight` without a value is true."""
    tweaks: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            tweaks[name] = action.get("value", True) if name == "highlight" else action.get("value")
    return tweaks


def notification_body(
    pusher: Pusher, action: PushAction, event: Event, details: EventDetails, unread: int
) -> dict[str, Any]:
    """The `/notify` request body for one pusher (push_notifier.yaml)."""
    device = {
        "app_id": pusher.app_id,
        "pushkey": pusher.pushkey,
        "pushkey_ts": pusher.pushkey_ts // 1000,  # seconds
        # "the data dictionary passed in at pusher creation minus the url key"
        "data": {k: v for k, v in pusher.data.items() if k != "url"},
        "tweaks": tweaks_of(action.actions),
    }
    user_is_target = event.type == MEMBER and event.state_key == action.user_id
    high = action.highlight or event.type in _HIGH_PRIORITY_TYPES or user_is_target
    notification: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": event.room_id,
        "prio": "high" if high else "low",
        # "Counts whose value is zero should be omitted."
        "counts": {"unread": unread} if unread else {},
        "devices": [device],
    }
    if pusher.data.get("format") == "event_id_only":
        return {"notification": notification}
    notification.update(type=event.type, sender=event.sender, content=dict(event.content))
    if user_is_target:
        notification["user_is_target"] = True
    optional = {
        "sender_display_name": details.sender_display_name,
        "room_name": details.room_name,
        "room_alias": details.room_alias,
    }
    notification.update({k: v for k, v in optional.items() if v is not None})
    return {"notification": notification}


class HttpPusherPool:
    def __init__(
        self,
        *,
        store: PushersStore,
        push_store: PushDataStore,
        rooms: RoomsOfUser,
        state: RoomStateCache,
        gateway: Gateway,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        give_up_after_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._push_store = push_store
        self._rooms = rooms
        self._state = state
        self.gateway = gateway
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.give_up_after_s = give_up_after_s
        self.clock = clock
        self._incoming: deque[tuple[PushAction, Event]] = deque()
        self._dispatcher: asyncio.Task[None] | None = None
        self._workers: dict[tuple[str, str, str], PusherWorker] = {}
        # Users who may have an http pusher (loaded on first use): most notified users have
        # none, and need no query. A user whose query finds none is dropped, unless a pusher
        # was set for them meanwhile (`_noted_at` > the query's generation).
        self._users_with_pushers: set[str] | None = None
        self._generation = 0
        self._noted_at: dict[str, int] = {}

    def note_pusher_set(self, user_id: str) -> None:
        """A pusher was just stored for `user_id` (PusherService calls this)."""
        self._generation += 1
        self._noted_at[user_id] = self._generation
        if self._users_with_pushers is not None:
            self._users_with_pushers.add(user_id)

    # --- the push evaluation hook ---------------------------------------------------------

    def on_notify(self, actions: Sequence[PushAction], events: Mapping[str, Event]) -> None:
        """Called by push evaluation with the `notify` actions it stored (never blocks)."""
        for action in actions:
            event = events.get(action.event_id)
            if event is not None:
                self._incoming.append((action, event))
        if self._incoming and (self._dispatcher is None or self._dispatcher.done()):
            self._dispatcher = asyncio.create_task(self._dispatch_all())

    async def _dispatch_all(self) -> None:
        while self._incoming:
            batch = list(self._incoming)
            self._incoming.clear()
            try:
                await self._dispatch(batch)
            except Exception:
                logger.exception("could not prepare %d push notifications", len(batch))

    async def _pushers_of(self, user_ids: set[str]) -> dict[str, list[Pusher]]:
        if self._users_with_pushers is None:
            self._users_with_pushers = await self._store.get_users_with_pushers(HTTP)
        candidates = user_ids & self._users_with_pushers
        if not candidates:
            return {}
        generation = self._generation
        by_user: dict[str, list[Pusher]] = {}
        for pusher in await self._store.get_pushers_of_kind(candidates, HTTP):
            by_user.setdefault(pusher.user_id, []).append(pusher)
        for user_id in candidates - by_user.keys():  # their pushers were deleted
            if self._noted_at.get(user_id, 0) <= generation:
                self._users_with_pushers.discard(user_id)
                self._noted_at.pop(user_id, None)
        return by_user

    async def _dispatch(self, batch: Sequence[tuple[PushAction, Event]]) -> None:
        by_user = await self._pushers_of({action.user_id for action, _ in batch})
        if not by_user:
            return
        unread: dict[str, int] = {}
        details: dict[str, EventDetails] = {}
        for action, event in batch:
            pushers = by_user.get(action.user_id)
            if not pushers:
                continue
            if action.user_id not in unread:
                unread[action.user_id] = await self._unread_count(action.user_id)
            if event.event_id not in details:
                details[event.event_id] = await self._event_details(event)
            for pusher in pushers:
                body = notification_body(
                    pusher, action, event, details[event.event_id], unread[action.user_id]
                )
                self._worker(pusher).enqueue(body)

    async def _unread_count(self, user_id: str) -> int:
        """push-gateway `counts.unread`: unread notifications across the user's rooms."""
        rooms = await self._rooms.get_rooms_for_user(user_id)
        counts = await self._push_store.get_unread_counts(user_id, rooms)
        return sum(c.notification_count for c in counts.values())

    async def _event_details(self, event: Event) -> EventDetails:
        keys = [(MEMBER, event.sender), ("m.room.name", ""), ("m.room.canonical_alias", "")]
        state = await self._state.get_current_state(event.room_id, keys)

        def text(key: tuple[str, str], field: str) -> str | None:
            found = state.get(key)
            value = found.content.get(field) if found is not None else None
            return value if isinstance(value, str) and value else None

        return EventDetails(
            sender_display_name=text((MEMBER, event.sender), "displayname"),
            room_name=text(("m.room.name", ""), "name"),
            room_alias=text(("m.room.canonical_alias", ""), "alias"),
        )

    # --- workers --------------------------------------------------------------------------

    def _worker(self, pusher: Pusher) -> PusherWorker:
        worker = self._workers.get(pusher.key)
        if worker is None:
            worker = self._workers[pusher.key] = PusherWorker(self, pusher)
        worker.pusher = pusher  # the latest settings (the URL may have changed)
        return worker

    async def on_rejected(self, pusher: Pusher) -> None:
        """The gateway rejected the pushkey: the pusher is removed."""
        logger.info("push gateway rejected %s of %s: pusher removed", pusher.app_id, pusher.user_id)
        await self._store.delete_pusher(pusher.user_id, pusher.app_id, pusher.pushkey)
        self._workers.pop(pusher.key, None)

    async def close(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.gateway.close()


class PusherWorker:
    """One pusher's queue: notifications sent in order, one at a time."""

    def __init__(self, pool: HttpPusherPool, pusher: Pusher) -> None:
        self._pool = pool
        self.pusher = pusher
        self._queue: deque[tuple[float, dict[str, Any]]] = deque()
        self.task: asyncio.Task[None] | None = None

    def enqueue(self, body: dict[str, Any]) -> None:
        self._queue.append((self._pool.clock(), body))
        while len(self._queue) > MAX_PENDING:
            self._queue.popleft()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        pool = self._pool
        delay = pool.backoff_initial_s
        while self._queue:
            queued_at, body = self._queue[0]
            url = str(self.pusher.data.get("url", ""))
            try:
                rejected = await pool.gateway.notify(url, body)
            except Exception as exc:
                retry = getattr(exc, "retry", False)
                if retry and pool.clock() - queued_at < pool.give_up_after_s:
                    logger.info("push gateway failed (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, pool.backoff_max_s)
                    continue
                logger.warning("push notification dropped: %s", exc)
                self._queue.popleft()
                continue
            self._queue.popleft()
            delay = pool.backoff_initial_s
            if self.pusher.pushkey in rejected:
                self._queue.clear()
                await pool.on_rejected(self.pusher)
                return
