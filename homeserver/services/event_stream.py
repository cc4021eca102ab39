"""The deprecated event stream: `GET /events` and `GET /events/{eventId}` (`old_sync.yaml`),
and its peeking form `GET /events?room_id=…` (`peeking_events.yaml`, C-S "Room Previews").

Tokens are stream tokens `s<position>` (homeserver/services/tokens.py), the `end` of
`/initialSync` or of a previous `/events`; a /sync `next_batch` works too. Without `room_id`
the stream holds the events of the rooms the user is joined to and the user's own membership
events anywhere (an invite or a kick comes from a room they are not joined to); with it, the
events of that room, which the user may read if they are in it or the room is world readable
("servers are required to only return events where the room state at the event had the
`m.room.history_visibility` state event present with `history_visibility` value
`world_readable`", applied by the history visibility rules). The request waits up to
`timeout` ms for something to return, woken by the notifier as /sync is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from federation.room_state import MEMBER
from homeserver.errors import MatrixError
from homeserver.services.client_events import Viewer
from homeserver.services.notifier import Notifier
from homeserver.services.room_reads import RoomReader, event_not_found
from homeserver.services.tokens import StreamToken
from homeserver.storage.event_rows import EventRow
from homeserver.storage.legacy_reads import LegacyReadsStore
from homeserver.storage.rooms import RoomsStore

# Events per response; a longer backlog comes in several requests.
MAX_EVENTS: Final = 100


@dataclass(frozen=True, slots=True)
class StreamChunk:
    start: int
    end: int
    chunk: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": str(StreamToken(self.start)),
            "end": str(StreamToken(self.end)),
            "chunk": self.chunk,
        }


class EventStream:
    def __init__(
        self,
        *,
        reader: RoomReader,
        store: LegacyReadsStore,
        rooms: RoomsStore,
        notifier: Notifier,
    ) -> None:
        self._reader = reader
        self._store = store
        self._rooms = rooms
        self._notifier = notifier

    async def events(
        self,
        viewer: Viewer,
        *,
        from_position: int | None,
        timeout_ms: int,
        room_id: str | None = None,
    ) -> StreamChunk:
        """Events after `from_position` (None: from now), waiting up to `timeout_ms` for the
        first; with `room_id`, only that room (403 `M_FORBIDDEN` if the user may not read it)."""
        current = self._notifier.current_position
        start = current if from_position is None else min(from_position, current)
        if room_id is not None:
            await self._reader.check_access(room_id, viewer.user_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        cursor = start
        while True:
            room_ids = await self._watched_rooms(viewer.user_id, room_id)
            remaining_ms = max(0, int((deadline - loop.time()) * 1000))
            up_to = await self._notifier.wait_for_events(
                viewer.user_id, room_ids, cursor, remaining_ms
            )
            rows, memberships, cursor = await self._read(
                viewer.user_id, room_id, room_ids, cursor, up_to
            )
            if rows or loop.time() >= deadline:
                break
        chunk = await self._reader.formatter.format_events(rows, viewer, memberships=memberships)
        return StreamChunk(start, cursor, chunk)

    async def _watched_rooms(self, user_id: str, room_id: str | None) -> Collection[str]:
        if room_id is not None:
            return (room_id,)
        return await self._rooms.get_rooms_for_user(user_id, ("join",))

    async def _read(
        self,
        user_id: str,
        room_id: str | None,
        room_ids: Collection[str],
        cursor: int,
        up_to: int,
    ) -> tuple[list[EventRow], dict[str, str], int]:
        """The visible events in `(cursor, up_to]` (at most `MAX_EVENTS` looked at), the
        user's membership at each, and the position the next read starts from."""
        own_memberships = user_id if room_id is None else None
        rows = await self._store.get_stream_events(
            room_ids, own_memberships, cursor, up_to, MAX_EVENTS + 1
        )
        end = up_to
        if len(rows) > MAX_EVENTS:
            rows = rows[:MAX_EVENTS]
            end = rows[-1].stream_ordering
        verdicts = await self._reader.visibility.check_events(user_id, rows)
        visible = [
            row
            for row in rows
            if verdicts[row.event.event_id].visible
            # The user's own membership changes always reach them: an invite is how they
            # learn of a room (the visibility rules would hide it in a `shared` room).
            or (room_id is None and row.event.type == MEMBER and row.event.state_key == user_id)
        ]
        memberships = {
            str(row.event.event_id): verdicts[row.event.event_id].membership for row in visible
        }
        return visible, memberships, end

    async def get_event(self, event_id: str, viewer: Viewer) -> dict[str, Any]:
        """GET /events/{eventId}: the event if the user may see it; else 404 `M_NOT_FOUND`."""
        room_id = await self._store.get_event_room(event_id)
        if room_id is None:
            raise event_not_found()
        try:
            return await self._reader.get_event(room_id, event_id, viewer)
        except MatrixError as e:
            raise event_not_found() from e
