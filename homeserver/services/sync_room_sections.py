"""The body of each room in a /sync response's `rooms` (C-S "Syncing"; sync.yaml "Joined
Room", "Left Room", "Invited Room", "Knocked Room"): which range of a room to read for the
user, and how its timeline, state, summary and unread counts are laid out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from federation.pdu import Event
from homeserver.services.ignored_users import invite_hidden
from homeserver.services.push import PushService
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_events import format_events
from homeserver.services.sync_rooms import RoomRange, RoomSyncBuilder
from homeserver.services.sync_token import SyncToken
from homeserver.storage.rooms import Membership
from homeserver.storage.sync_data import SyncDataStore

if TYPE_CHECKING:
    from homeserver.services.sync import SyncRequest


class RoomSections:
    def __init__(
        self,
        *,
        builder: RoomSyncBuilder,
        store: SyncDataStore,
        state: RoomStateCache,
        push: PushService,
        clock: Callable[[], int],
    ) -> None:
        self._builder = builder
        self._store = store
        self._state = state
        self._push = push
        self._clock = clock

    async def joined_room(
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

    async def left_room(
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

    async def stripped_room(self, user_id: str, m: Membership) -> dict[str, Any] | None:
        """An invited or knocked room: the stripped state of its membership event, or None
        when it is not to be shown."""
        key = "invite_state" if m.membership == "invite" else "knock_state"
        member_event = await self._membership_event(m)
        if member_event is None or await self._invite_hidden(user_id, member_event):
            return None  # C-S "Ignoring Users": no invites from ignored users
        events = await self._builder.stripped_room_state(member_event)
        return {key: {"events": events}}

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

    async def add_unread_counts(self, user_id: str, rooms: Mapping[str, dict[str, Any]]) -> None:
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
