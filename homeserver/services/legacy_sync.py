"""The deprecated snapshot endpoints: `GET /rooms/{roomId}/initialSync` (`room_initial_sync.yaml`)
and `GET /initialSync` (`old_sync.yaml`), both still in the spec (C-S "Syncing", "Getting events
for a room"; "Room Previews" has clients peek at world-readable rooms with the first).

Each room is a `RoomInfo`: the user's `membership`, the newest `messages` (oldest first, with a
`start` token to paginate back and an `end` token that /messages and `GET /events` accept),
the room `state` (current, or as it was when the user left), its directory `visibility` and the
user's room `account_data`. Everything is read through the same services as /messages and
/state (access checks, history visibility), so nothing here decides what a user may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from homeserver.errors import MatrixError
from homeserver.services.account_data import AccountDataService
from homeserver.services.client_events import Viewer
from homeserver.services.notifier import Notifier
from homeserver.services.pagination import RoomPaginator
from homeserver.services.room_reads import RoomAccess, RoomReader
from homeserver.services.tokens import StreamToken
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.rooms import Membership, RoomsStore
from homeserver.storage.sync_data import GLOBAL, AccountDataRow

DEFAULT_LIMIT: Final = 10
# old_sync.yaml `archived`: left rooms only when asked for; knocks have no RoomInfo form.
CURRENT: Final = frozenset({"join", "invite"})
DEPARTED: Final = frozenset({"leave", "ban"})


def account_data_events(rows: Sequence[AccountDataRow], room_id: str) -> list[dict[str, Any]]:
    return [{"type": r.type, "content": r.content} for r in rows if r.room_id == room_id]


class LegacySync:
    def __init__(
        self,
        *,
        reader: RoomReader,
        paginator: RoomPaginator,
        rooms: RoomsStore,
        directory: RoomDirectoryStore,
        account_data: AccountDataService,
        notifier: Notifier,
    ) -> None:
        self._reader = reader
        self._paginator = paginator
        self._rooms = rooms
        self._directory = directory
        self._account_data = account_data
        self._notifier = notifier

    async def _account_data_rows(self, user_id: str) -> list[AccountDataRow]:
        until = self._account_data.stream.current_position
        return await self._account_data.changes(user_id, 0, until, initial=True)

    async def room_initial_sync(self, room_id: str, viewer: Viewer, limit: int) -> dict[str, Any]:
        """GET /rooms/{roomId}/initialSync: 403 `M_FORBIDDEN` unless the user may read the
        room (a member, a former member, or anyone for a world-readable room)."""
        position = self._notifier.current_position
        access = await self._reader.check_access(room_id, viewer.user_id)
        rows = await self._account_data_rows(viewer.user_id)
        return await self.room_info(access, viewer, limit, position, rows)

    async def room_info(
        self,
        access: RoomAccess,
        viewer: Viewer,
        limit: int,
        position: int,
        account_data: Sequence[AccountDataRow],
    ) -> dict[str, Any]:
        room_id, reader = access.room_id, self._reader
        end = StreamToken(position)
        # The newest `limit` events up to `position` the user may see (capped at their leave).
        page = await self._paginator.messages(
            room_id,
            viewer,
            direction="b",
            from_token=end,
            to_token=None,
            limit=limit,
            event_filter=None,
        )
        messages: dict[str, Any] = {"chunk": page.chunk[::-1], "end": str(end)}
        if page.end is not None:
            messages["start"] = page.end
        state_rows = await reader.state_rows(await reader.state_ids(access))
        state = await reader.formatter.format_events(
            state_rows, viewer, bundle=False, replaced_state=False
        )
        public = await self._rooms.is_room_public(room_id)
        return {
            "room_id": room_id,
            "membership": access.membership,
            "messages": messages,
            "state": state,
            "visibility": "public" if public else "private",
            "account_data": account_data_events(account_data, room_id),
        }

    async def initial_sync(self, viewer: Viewer, limit: int, archived: bool) -> dict[str, Any]:
        """GET /initialSync: every room the user is joined or invited to (with `archived`,
        also those they left or were banned from and have not forgotten)."""
        user_id = viewer.user_id
        position = self._notifier.current_position
        account_data = await self._account_data_rows(user_id)
        forgotten = await self._directory.get_forgotten_room_ids(user_id) if archived else set()
        rooms: list[dict[str, Any]] = []
        for membership in await self._rooms.get_local_memberships(user_id):
            wanted = CURRENT | DEPARTED if archived else CURRENT
            if membership.membership not in wanted or membership.room_id in forgotten:
                continue
            rooms.append(await self._room_entry(membership, viewer, limit, position, account_data))
        return {
            "end": str(StreamToken(position)),
            "rooms": rooms,
            # Presence is not part of this server's legacy sync.
            "presence": [],
            "account_data": account_data_events(account_data, GLOBAL),
        }

    async def _room_entry(
        self,
        membership: Membership,
        viewer: Viewer,
        limit: int,
        position: int,
        account_data: Sequence[AccountDataRow],
    ) -> dict[str, Any]:
        room_id = membership.room_id
        entry: dict[str, Any] = {"room_id": room_id, "membership": membership.membership}
        if membership.membership == "invite":
            # old_sync.yaml: "The invite event if `membership` is `invite`" (it may be an
            # outlier when the room is on another server).
            rows = await self._reader.store.get_state_event_rows([membership.event_id])
            if membership.event_id in rows:
                (entry["invite"],) = await self._reader.formatter.format_events(
                    [rows[membership.event_id]], viewer, bundle=False, replaced_state=False
                )
            return entry
        try:
            access = await self._reader.check_access(room_id, viewer.user_id)
        except MatrixError:
            return entry  # left without ever having joined: nothing to read
        return await self.room_info(access, viewer, limit, position, account_data)
