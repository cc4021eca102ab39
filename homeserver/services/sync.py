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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from homeserver.services.account_data import AccountDataService
from homeserver.services.filters import Filter, event_matches, room_allowed
from homeserver.services.push import PushService
from homeserver.services.receipts import ReceiptsService
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_concurrency import concurrently, gather_limited
from homeserver.services.sync_e2ee import E2eeSyncSection, empty_section, has_device_list_changes
from homeserver.services.sync_ephemeral import EphemeralSyncSection
from homeserver.services.sync_presence import PresenceSyncSection
from homeserver.services.sync_recent import RecentEvents
from homeserver.services.sync_room_sections import RoomSections
from homeserver.services.sync_rooms import RoomSyncBuilder
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
        self._sections = RoomSections(
            builder=builder, store=store, state=state, push=push, clock=clock
        )
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
        ) = await concurrently(
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
        ephemeral, account_rows, with_events = await concurrently(
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
        bodies = await gather_limited(
            [
                self._sections.joined_room(
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
        await self._sections.add_unread_counts(user_id, sections["join"])
        for m in memberships:
            if m.membership == "join" or (since is not None and m.stream_ordering <= since.events):
                continue
            if m.membership in ("invite", "knock"):
                stripped = await self._sections.stripped_room(user_id, m)
                if stripped is not None:
                    sections[m.membership][m.room_id] = stripped
            elif since is not None or room_filter.include_leave:
                sections["leave"][m.room_id] = await self._sections.left_room(
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
