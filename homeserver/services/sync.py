"""/sync (C-S "Syncing", sync.yaml): initial and incremental sync with long-polling.

A request reads every stream between its `since` token and the current token; when nothing
is new and `timeout` allows, it waits on all streams at once (SyncStreams.wait) and reads
again. Rooms come from the user's current memberships: joined rooms with anything new, rooms
joined, left, invited to or knocked on since `since` (all of them on an initial sync).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from federation.pdu import Event
from homeserver.services.account_data import AccountDataService
from homeserver.services.filters import Filter, event_matches, room_allowed
from homeserver.services.ignored_users import invite_hidden
from homeserver.services.push import PushService
from homeserver.services.receipts import ReceiptsService
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_e2ee import E2eeSyncSection, empty_section, has_device_list_changes
from homeserver.services.sync_ephemeral import EphemeralSyncSection
from homeserver.services.sync_events import format_events
from homeserver.services.sync_presence import PresenceSyncSection
from homeserver.services.sync_recent import RecentEvents
from homeserver.services.sync_rooms import RoomRange, RoomSyncBuilder
from homeserver.services.sync_streams import SyncStreams
from homeserver.services.sync_to_device import ToDeviceSyncSection
from homeserver.services.sync_token import SyncToken
from homeserver.services.typing import TypingService
from homeserver.storage.events import EventsStore
from homeserver.storage.push_data import PushDataStore
from homeserver.storage.rooms import Membership, RoomsStore
from homeserver.storage.sync_data import GLOBAL, AccountDataRow, SyncDataStore

# A long-poll never holds a request longer than this, whatever the client asks.
MAX_TIMEOUT_MS: Final = 5 * 60_000
# Users whose memberships are kept between /sync requests (least recently used dropped).
MEMBERSHIP_CACHE_SIZE: Final = 10_000
# Rooms of one response built at the same time (each takes a pooled connection per query).
ROOM_CONCURRENCY: Final = 8


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    user_id: str
    device_id: str | None
    sync_filter: Filter
    since: SyncToken | None
    full_state: bool
    timeout_ms: int


class SyncService:
    def __init__(
        self,
        *,
        streams: SyncStreams,
        rooms: RoomsStore,
        events: EventsStore,
        state: RoomStateCache,
        store: SyncDataStore,
        push_store: PushDataStore,
        builder: RoomSyncBuilder,
        typing: TypingService,
        receipts: ReceiptsService,
        account_data: AccountDataService,
        push: PushService,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._streams = streams
        self._rooms = rooms
        self._events = events
        self._state = state
        self._store = store
        self._push_store = push_store
        self._builder = builder
        self._ephemeral = EphemeralSyncSection(typing, receipts)
        self._to_device = ToDeviceSyncSection(store)
        self._account_data = account_data
        self._push = push
        self._clock = clock
        self._recent = RecentEvents(lambda: streams.events.current_position)
        streams.events.add_commit_listener(self._recent.record)
        builder.recent = self._recent
        push.recent = self._recent
        self._membership_cache: OrderedDict[str, tuple[Sequence[Membership], int]] = OrderedDict()
        # Device lists and key counts; set by homeserver/app.py once E2EE is wired.
        self.e2ee: E2eeSyncSection | None = None
        # The top-level presence section; set by presence_setup.py when presence is enabled.
        self.presence: PresenceSyncSection | None = None

    async def sync(self, request: SyncRequest) -> dict[str, Any]:
        current = self._streams.current_token()
        since = request.since.capped(current) if request.since is not None else None
        memberships, read_at = await self._memberships(request.user_id, current.events)
        response: dict[str, Any] | None = None
        if self._may_have_news(request, since, current, memberships):
            response, empty = await self._build(request, since, current, memberships)
            # full_state: "the timeout parameter will be ignored and the query will return
            # immediately".
            if since is None or request.full_state or not empty:
                return response
        empty = True
        deadline = (
            asyncio.get_running_loop().time() + min(request.timeout_ms, MAX_TIMEOUT_MS) / 1000
        )
        while empty:
            remaining_ms = int((deadline - asyncio.get_running_loop().time()) * 1000)
            if remaining_ms <= 0:
                break
            rooms = [m.room_id for m in memberships]
            after = await self._streams.wait(request.user_id, rooms, current, remaining_ms)
            if not after.is_after(current):
                break
            memberships, read_at = await self._memberships(request.user_id, after.events, read_at)
            current = after
            response, empty = await self._build(request, since, current, memberships)
        if response is None:  # timed out without building: the (empty) answer
            response, _ = await self._build(request, since, current, memberships)
        return response

    def _may_have_news(
        self,
        request: SyncRequest,
        since: SyncToken | None,
        current: SyncToken,
        memberships: Sequence[Membership],
    ) -> bool:
        """False for a long-poll from the current token with nothing announced after it (a
        client asking again right after its answer): it can wait before building anything."""
        return (
            since is None
            or request.full_state
            or request.timeout_ms <= 0
            or since != current
            or self._streams.has_new(request.user_id, [m.room_id for m in memberships], since)
        )

    async def _memberships(
        self, user_id: str, now: int, read_at: int | None = None
    ) -> tuple[Sequence[Membership], int]:
        """The user's memberships, and the events position they were read at (or later).
        A membership change after that position is announced to the user (Notifier), and only
        then are they read again; between requests they are kept per user."""
        cached = self._membership_cache.get(user_id)
        if (
            cached is not None
            and (read_at is None or cached[1] >= read_at)
            and not self._streams.events.has_new_events(user_id, (), cached[1])
        ):
            self._membership_cache.move_to_end(user_id)
            return cached
        memberships = await self._rooms.get_local_memberships(user_id)
        self._membership_cache[user_id] = (memberships, now)
        self._membership_cache.move_to_end(user_id)
        if len(self._membership_cache) > MEMBERSHIP_CACHE_SIZE:
            self._membership_cache.popitem(last=False)
        return memberships, now

    async def _build(
        self,
        request: SyncRequest,
        since: SyncToken | None,
        now: SyncToken,
        all_memberships: Sequence[Membership],
    ) -> tuple[dict[str, Any], bool]:
        """The response up to `now`, and whether it has nothing new. Its independent parts
        (rooms, to-device, end-to-end encryption) are read at the same time."""
        (
            (sections, global_account_data),
            (to_device, to_device_at),
            e2ee,
            presence,
        ) = await _concurrently(
            self._rooms_sections(request, since, now, all_memberships),
            self._to_device.section(request.user_id, request.device_id, since, now),
            self._e2ee(request, since, now, all_memberships),
            self._presence(request, since, now, all_memberships),
            parallel=since is None,
        )
        response = {
            "next_batch": str(replace(now, to_device=to_device_at)),
            "rooms": sections,
            "presence": {"events": presence},
            "account_data": {"events": global_account_data},
            "to_device": {"events": to_device},
            **e2ee,
        }
        empty = not (
            any(sections.values())
            or global_account_data
            or presence
            or to_device
            or has_device_list_changes(e2ee)
        )
        return response, empty

    async def _e2ee(
        self,
        request: SyncRequest,
        since: SyncToken | None,
        now: SyncToken,
        memberships: Sequence[Membership],
    ) -> dict[str, Any]:
        if self.e2ee is None:
            return empty_section()
        changed = since is None or self._streams.events.users_affected_after(
            request.user_id, [m.room_id for m in memberships], since.events
        )
        return await self.e2ee.section(
            request.user_id, request.device_id, since, now, memberships_changed=changed
        )

    async def _presence(
        self,
        request: SyncRequest,
        since: SyncToken | None,
        now: SyncToken,
        memberships: Sequence[Membership],
    ) -> list[dict[str, Any]]:
        if self.presence is None:
            return []
        joined = [m.room_id for m in memberships if m.membership == "join"]
        return await self.presence.section(
            request.user_id, joined, since, now, request.sync_filter.presence
        )

    async def _rooms_sections(
        self,
        request: SyncRequest,
        since: SyncToken | None,
        now: SyncToken,
        all_memberships: Sequence[Membership],
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """`rooms` (join, invite, leave, knock) and the global account data."""
        user_id, room_filter = request.user_id, request.sync_filter.room
        memberships = [
            m
            for m in all_memberships
            if room_allowed(room_filter, m.room_id) and m.stream_ordering <= now.events
        ]
        sections: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        joined = [m for m in memberships if m.membership == "join"]
        ephemeral, account_rows, with_events = await _concurrently(
            self._ephemeral.section(
                user_id, room_filter.ephemeral, [m.room_id for m in joined], since, now
            ),
            self._account_data_changes(user_id, since, now),
            self._rooms_with_events(joined, since, now),
            parallel=since is None,
        )
        room_account_data: dict[str, list[dict[str, Any]]] = {}
        global_account_data = []
        for row in account_rows:
            event = {"type": row.type, "content": row.content}
            if row.room_id == GLOBAL:
                if event_matches(request.sync_filter.account_data, event):
                    global_account_data.append(event)
            elif event_matches(room_filter.account_data, event, room_id=row.room_id):
                room_account_data.setdefault(row.room_id, []).append(event)
        included = [
            m
            for m in joined
            if since is None
            or request.full_state
            or m.stream_ordering > since.events
            or m.room_id in with_events
            or m.room_id in ephemeral
            or m.room_id in room_account_data
        ]
        bodies = await _gather_limited(
            [
                self._joined_room(
                    request,
                    m,
                    since,
                    now,
                    ephemeral.get(m.room_id, []),
                    room_account_data.get(m.room_id, []),
                )
                for m in included
            ]
        )
        for m, body in zip(included, bodies, strict=True):
            sections["join"][m.room_id] = body
        await self._add_unread_counts(user_id, sections["join"])
        for m in memberships:
            if m.membership == "join" or (since is not None and m.stream_ordering <= since.events):
                continue
            if m.membership in ("invite", "knock"):
                key = "invite_state" if m.membership == "invite" else "knock_state"
                member_event = await self._membership_event(m)
                if member_event is not None and await self._invite_hidden(user_id, member_event):
                    continue  # C-S "Ignoring Users": no invites from ignored users
                if member_event is not None:
                    events = await self._builder.stripped_room_state(member_event)
                    sections[m.membership][m.room_id] = {key: {"events": events}}
            elif since is not None or room_filter.include_leave:
                sections["leave"][m.room_id] = await self._left_room(
                    request, m, since, room_account_data.get(m.room_id, [])
                )
        return sections, global_account_data

    async def _account_data_changes(
        self, user_id: str, since: SyncToken | None, now: SyncToken
    ) -> list[AccountDataRow]:
        if since is not None and since.account_data >= now.account_data:
            return []  # nothing can be new
        return await self._account_data.changes(
            user_id, since.account_data if since else 0, now.account_data, initial=since is None
        )

    async def _rooms_with_events(
        self, joined: Sequence[Membership], since: SyncToken | None, now: SyncToken
    ) -> Collection[str]:
        """The joined rooms with client-visible events in `(since, now]`. Only rooms the
        notifier announced after `since` can have any, so usually no query is needed."""
        if since is not None and since.events >= now.events:
            return ()
        room_ids: Sequence[str] = [m.room_id for m in joined]
        if since is not None:
            announced = self._streams.events.rooms_announced_after(room_ids, since.events)
            room_ids = room_ids if announced is None else announced
        if not room_ids:
            return ()
        lower = since.events if since else 0
        known = {r: self._recent.has_events(r, lower, now.events) for r in room_ids}
        if all(found is not None for found in known.values()):
            return [r for r, found in known.items() if found]
        return await self._events.get_room_ids_with_events_between(
            room_ids, since.events if since else 0, now.events
        )

    async def _joined_room(
        self,
        request: SyncRequest,
        m: Membership,
        since: SyncToken | None,
        now: SyncToken,
        ephemeral: list[dict[str, Any]],
        account_data: list[dict[str, Any]],
    ) -> dict[str, Any]:
        new_to_client = since is None or (
            m.stream_ordering > since.events
            and await self._store.get_membership_at(m.room_id, request.user_id, since.events)
            != "join"
        )
        rng = RoomRange(
            room_id=m.room_id,
            user_id=request.user_id,
            device_id=request.device_id,
            since=None if new_to_client or since is None else since.events,
            until=now.events,
            full_state=request.full_state,
            membership_position=m.stream_ordering,
            joined=True,
        )
        summary = await self._builder.summary(m.room_id, request.user_id) if new_to_client else None
        heroes = summary.get("m.heroes", ()) if summary else ()
        snapshot = await self._builder.room(rng, request.sync_filter, heroes)
        room: dict[str, Any] = self._room_body(request, snapshot.timeline, snapshot.state)
        room["ephemeral"] = {"events": ephemeral}
        room["account_data"] = {"events": account_data}
        has_members = any(
            v.event.type == "m.room.member" for v in [*snapshot.timeline.events, *snapshot.state]
        )
        if summary is None and has_members:  # membership may have changed: fresh counts
            summary = await self._builder.summary(m.room_id, request.user_id)
        if summary is not None:
            room["summary"] = summary
        return room

    async def _left_room(
        self,
        request: SyncRequest,
        m: Membership,
        since: SyncToken | None,
        account_data: list[dict[str, Any]],
    ) -> dict[str, Any]:
        rng = RoomRange(
            room_id=m.room_id,
            user_id=request.user_id,
            device_id=request.device_id,
            since=since.events if since is not None else None,
            until=m.stream_ordering,
            full_state=request.full_state,
            membership_position=m.stream_ordering,
            joined=False,
        )
        snapshot = await self._builder.room(rng, request.sync_filter)
        room = self._room_body(request, snapshot.timeline, snapshot.state)
        room["account_data"] = {"events": account_data}
        return room

    def _room_body(self, request: SyncRequest, timeline: Any, state: Any) -> dict[str, Any]:
        now_ms = self._clock()
        return {
            "timeline": {
                "events": format_events(timeline.events, request.sync_filter, now_ms),
                "limited": timeline.limited,
                "prev_batch": timeline.prev_batch,
            },
            "state": {"events": format_events(state, request.sync_filter, now_ms)},
        }

    async def _invite_hidden(self, user_id: str, member_event: Event) -> bool:
        ignored = self._builder.ignored
        return ignored is not None and invite_hidden(
            member_event, await ignored.ignored_by(user_id)
        )

    async def _membership_event(self, m: Membership) -> Event | None:
        events = await self._state.get_events([m.event_id])
        return events.get(m.event_id)

    async def _add_unread_counts(self, user_id: str, rooms: Mapping[str, dict[str, Any]]) -> None:
        """C-S "Receiving notifications": the counts from push evaluation, which must include
        every event of this response, so wait for evaluation in progress first."""
        if not rooms:
            return
        await self._push.wait_until_processed(rooms)
        counts = await self._push.unread_counts(user_id, list(rooms))
        for room_id, room in rooms.items():
            found = counts.get(room_id)
            room["unread_notifications"] = {
                "notification_count": found.notification_count if found else 0,
                "highlight_count": found.highlight_count if found else 0,
            }


async def _concurrently(*awaitables: Awaitable[Any], parallel: bool = True) -> list[Any]:
    """Await independent parts at once; if one fails, the others are cancelled (not left
    running) and its exception propagates unchanged. Not `parallel` (an incremental sync,
    whose parts mostly come from memory): one after another, without a task each."""
    if not parallel:
        results = []
        pending = list(awaitables)
        try:
            while pending:
                results.append(await pending.pop(0))
        finally:
            for left in pending:  # not started: close them quietly
                if isinstance(left, Coroutine):
                    left.close()
        return results
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _gather_limited(
    coroutines: Sequence[Coroutine[Any, Any, dict[str, Any]]], limit: int = ROOM_CONCURRENCY
) -> list[dict[str, Any]]:
    """Run the per-room work of one response concurrently (their queries overlap instead of
    queueing one after another), at most `limit` at a time; results in the given order."""
    if len(coroutines) <= 1:
        return [await c for c in coroutines]
    semaphore = asyncio.Semaphore(limit)

    async def bounded(c: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
        async with semaphore:
            return await c

    return list(await asyncio.gather(*(bounded(c) for c in coroutines)))
