"""The top-level `presence` part of a /sync response (C-S "Presence", sync.yaml).

`m.presence` events of the users who share a joined room with the syncing user (and their
own), changed after the `since` token's presence position; on an initial sync (or a `since`
older than the changes kept) every such user's current state. Called by
homeserver/services/sync.py when presence is enabled.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from homeserver.services.filters import EventFilter, event_matches
from homeserver.services.presence import PresenceService
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_token import SyncToken


class PresenceSyncSection:
    def __init__(self, presence: PresenceService, state: RoomStateCache) -> None:
        self._presence = presence
        self._state = state

    async def section(
        self,
        user_id: str,
        joined_room_ids: Sequence[str],
        since: SyncToken | None,
        now: SyncToken,
        presence_filter: EventFilter,
    ) -> list[dict[str, Any]]:
        if since is not None and since.presence >= now.presence:
            return []  # nothing can be new
        changed = (
            self._presence.changed_users(since.presence, now.presence)
            if since is not None
            else None
        )
        if changed is None:
            candidates: Collection[str] = await self._users_sharing_a_room(
                user_id, joined_room_ids
            )
        else:
            # Who shared a room with the user when the change happened: no scan of every
            # member of every room for each change.
            rooms = frozenset(joined_room_ids)
            candidates = [
                u
                for u in changed
                if u == user_id or not self._presence.rooms_at_change(u).isdisjoint(rooms)
            ]
        if not candidates:
            return []
        now_ms = self._presence.now_ms()
        events = []
        for other in sorted(candidates):
            state = self._presence.get(other)
            if state is None:
                continue
            event = {"type": "m.presence", "sender": other, "content": state.content(now_ms)}
            if event_matches(presence_filter, event):
                events.append(event)
        if presence_filter.limit is not None:
            events = events[: presence_filter.limit]
        return events

    async def _users_sharing_a_room(self, user_id: str, room_ids: Sequence[str]) -> set[str]:
        users = {user_id}
        for room_id in room_ids:
            users.update(await self._state.get_joined_members(room_id))
        return users
