"""Reading a room: who may read it, its state, its members and single events.

C-S "Getting events for a room" (`data/api/client-server/rooms.yaml`) and "Room History
Visibility". A joined user reads the current room; a user who left (or was banned) reads the
room as it was when they left, and no event after that; anyone else reads only a
`world_readable` room, and gets 403 `M_FORBIDDEN` otherwise. Each event is then checked against
the history visibility rules (homeserver/services/visibility.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from federation.room_state import HISTORY_VISIBILITY, MEMBER
from homeserver.errors import MatrixError
from homeserver.services.client_events import ClientEventFormatter, Viewer
from homeserver.services.state import RoomStateCache
from homeserver.services.visibility import WORLD_READABLE, HistoryVisibility
from homeserver.storage.event_rows import EventRow
from homeserver.storage.room_reads import Key, RoomReadsStore
from homeserver.storage.state import StateKey

MEMBERSHIPS: Final = frozenset({"join", "invite", "knock", "leave", "ban"})
DEPARTED: Final = frozenset({"leave", "ban"})


def forbidden() -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", "You aren't a member of the room")


def event_not_found() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Event not found")


@dataclass(frozen=True, slots=True)
class RoomAccess:
    """What a user may read of a room."""

    room_id: str
    # The user's current membership ("leave" when they have none).
    membership: str
    # For a user who left: their leave (or ban) event and its key; nothing after it is theirs
    # to read. None: no such limit (joined, or a world-readable room).
    until_event_id: str | None = None
    until_key: Key | None = None

    @property
    def joined(self) -> bool:
        return self.membership == "join"

    def cap(self, key: Key) -> Key:
        """`key`, or the leave point if that comes first."""
        return key if self.until_key is None else min(key, self.until_key)


class RoomReader:
    """Access checks, room state, members and single events for client requests."""

    def __init__(
        self,
        cache: RoomStateCache,
        store: RoomReadsStore,
        visibility: HistoryVisibility,
        formatter: ClientEventFormatter,
    ) -> None:
        self.cache = cache
        self.store = store
        self.visibility = visibility
        self.formatter = formatter

    # --- access ---------------------------------------------------------------------------

    async def check_access(self, room_id: str, user_id: str) -> RoomAccess:
        """The user's read access to the room, or 403 `M_FORBIDDEN` (also for unknown rooms,
        so that nobody learns which rooms exist)."""
        if await self.cache.get_room_state(room_id) is None:
            raise forbidden()
        current = await self.store.get_current_membership(room_id, user_id)
        membership, event_id = current if current is not None else ("leave", None)
        if membership == "join":
            return RoomAccess(room_id, membership)
        if membership in DEPARTED and event_id is not None:
            # Only someone who was once joined reads the room as it was when they left.
            joins = await self.store.get_latest_join_keys([room_id], user_id)
            until_key = await self.store.get_event_key(room_id, event_id)
            if room_id in joins and until_key is not None:
                return RoomAccess(room_id, membership, event_id, until_key)
        if await self.current_history_visibility(room_id) == WORLD_READABLE:
            return RoomAccess(room_id, membership)
        raise forbidden()

    async def current_history_visibility(self, room_id: str) -> str | None:
        found = await self.cache.get_current_state(room_id, [(HISTORY_VISIBILITY, "")])
        event = found.get((HISTORY_VISIBILITY, ""))
        value = None if event is None else event.content.get("history_visibility")
        return value if isinstance(value, str) else None

    # --- state ----------------------------------------------------------------------------

    async def state_ids(self, access: RoomAccess) -> Mapping[StateKey, str]:
        """The state the user may read: current, or as it was when they left."""
        if access.until_event_id is None:
            return await self.cache.get_current_state_ids(access.room_id)
        state = await self.cache.get_state_after_event(access.until_event_id)
        return state if state is not None else {}

    async def state_rows(self, state: Mapping[StateKey, str]) -> list[EventRow]:
        """The events of a state map, ordered by `(type, state_key)`: outliers included (a
        room joined over federation has its state stored as outliers), rejected ones not."""
        rows = await self.store.get_state_event_rows(set(state.values()))
        return sorted(rows.values(), key=lambda r: (r.event.type, r.event.state_key or ""))

    async def get_state(self, room_id: str, viewer: Viewer) -> list[dict[str, Any]]:
        """GET /rooms/{roomId}/state."""
        access = await self.check_access(room_id, viewer.user_id)
        rows = await self.state_rows(await self.state_ids(access))
        return await self.formatter.format_events(
            rows, viewer, bundle=False, replaced_state=False
        )

    async def get_state_event(
        self, room_id: str, event_type: str, state_key: str, viewer: Viewer
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/state/{eventType}/{stateKey}: the client event (callers take
        its `content` for the default `format=content`); 404 `M_NOT_FOUND` if absent."""
        access = await self.check_access(room_id, viewer.user_id)
        event_id = (await self.state_ids(access)).get((event_type, state_key))
        rows = await self.store.get_state_event_rows([event_id]) if event_id else {}
        if event_id is None or event_id not in rows:
            raise MatrixError(404, "M_NOT_FOUND", "Event not found")
        return await self.formatter.format_event(rows[event_id], viewer, bundle=False)

    # --- members --------------------------------------------------------------------------

    async def get_members(
        self,
        room_id: str,
        viewer: Viewer,
        *,
        at_key: Key | None = None,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[dict[str, Any]]:
        """GET /rooms/{roomId}/members: member events of the state the user may read, or of
        the state at `at_key`. `membership` / `not_membership` combine as an 'or' (rooms.yaml)."""
        access = await self.check_access(room_id, viewer.user_id)
        if at_key is None:
            state = await self.state_ids(access)
        else:
            state = await self.state_at_key(access, at_key)
        members = {k: v for k, v in state.items() if k[0] == MEMBER}
        rows = await self.state_rows(members)
        if membership is not None or not_membership is not None:
            rows = [
                row
                for row in rows
                if (membership is not None and row.event.membership == membership)
                or (not_membership is not None and row.event.membership != not_membership)
            ]
        return await self.formatter.format_events(
            rows, viewer, bundle=False, replaced_state=False
        )

    async def state_at_key(self, access: RoomAccess, key: Key) -> Mapping[StateKey, str]:
        """The room state at a point of its history (never past the user's leave)."""
        event_id = await self.store.get_last_event_at_or_before(access.room_id, access.cap(key))
        if event_id is None:
            return {}
        state = await self.cache.get_state_after_event(event_id)
        return state if state is not None else {}

    async def get_joined_members(self, room_id: str, user_id: str) -> dict[str, dict[str, str]]:
        """GET /rooms/{roomId}/joined_members: only for members currently joined."""
        access = await self.check_access(room_id, user_id)
        if not access.joined:
            raise forbidden()
        state = await self.cache.get_current_state_ids(room_id)
        members = await self.cache.get_events(v for k, v in state.items() if k[0] == MEMBER)
        joined: dict[str, dict[str, str]] = {}
        for event in members.values():
            if event.membership != "join" or event.state_key is None:
                continue
            profile: dict[str, str] = {}
            for source, target in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                value = event.content.get(source)
                if isinstance(value, str):
                    profile[target] = value
            joined[event.state_key] = profile
        return joined

    # --- single events --------------------------------------------------------------------

    async def get_visible_event(
        self, access: RoomAccess, event_id: str, user_id: str
    ) -> tuple[EventRow, str]:
        """The event and the user's membership at it, if they may see it; else 404."""
        row = await self.store.get_event_row(access.room_id, event_id)
        if row is None:
            raise event_not_found()
        if access.until_key is not None and (row.event.depth, row.stream_ordering) > (
            access.until_key
        ):
            raise event_not_found()
        verdict = (await self.visibility.check_events(user_id, [row]))[event_id]
        if not verdict.visible:
            raise event_not_found()
        return row, verdict.membership

    async def get_event(self, room_id: str, event_id: str, viewer: Viewer) -> dict[str, Any]:
        """GET /rooms/{roomId}/event/{eventId}: 404 `M_NOT_FOUND` for events that are unknown
        or that the user may not see (rooms.yaml), whatever the reason."""
        try:
            access = await self.check_access(room_id, viewer.user_id)
        except MatrixError:
            raise event_not_found() from None
        row, membership = await self.get_visible_event(access, event_id, viewer.user_id)
        (event,) = await self.formatter.format_events(
            [row], viewer, memberships={event_id: membership}
        )
        return event
