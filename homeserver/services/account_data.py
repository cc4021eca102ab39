"""Account data (C-S "Client Config"), global and per room, with room tags (C-S "Room
Tagging") and the fully read marker (C-S "Read and unread markers") kept as room account data.

Every change takes a position in the account data stream and wakes only the owner's /sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from homeserver.errors import MatrixError
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.sync_data import GLOBAL, AccountDataRow, SyncDataStore

FULLY_READ: Final = "m.fully_read"
PUSH_RULES: Final = "m.push_rules"
TAG: Final = "m.tag"
# C-S "Client Config", server behaviour: types the server manages; clients get 405.
SERVER_MANAGED: Final = frozenset({FULLY_READ, PUSH_RULES})
MAX_TAG_BYTES: Final = 255
MAX_TYPE_BYTES: Final = 255

# Default content of a server-managed type the user never changed (m.push_rules).
DefaultContent = Callable[[str], Awaitable[dict[str, Any] | None]]


class AccountDataService:
    def __init__(self, store: SyncDataStore, stream: AuxStream) -> None:
        self._store = store
        self._stream = stream
        self._defaults: dict[str, DefaultContent] = {}

    @property
    def stream(self) -> AuxStream:
        return self._stream

    def set_default(self, data_type: str, default: DefaultContent) -> None:
        """Content to serve for `data_type` while the user has none stored (m.push_rules)."""
        self._defaults[data_type] = default

    async def set_by_client(
        self, user_id: str, room_id: str, data_type: str, content: Mapping[str, Any]
    ) -> None:
        """`PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}`."""
        if data_type in SERVER_MANAGED:
            raise MatrixError(405, "M_BAD_JSON", f"Cannot set {data_type} through this API")
        if not data_type or len(data_type.encode()) > MAX_TYPE_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid account data type")
        await self.put(user_id, room_id, data_type, dict(content))

    async def put(self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]) -> int:
        """Store (server-managed types included) and announce to the owner; the position."""
        async with self._stream.write(user_ids=(user_id,)) as position:
            await self._store.put_account_data(user_id, room_id, data_type, content, position)
        return position

    async def get(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any]:
        """The content, or 404 M_NOT_FOUND."""
        content = await self._store.get_account_data(user_id, room_id, data_type)
        if content is None and room_id == GLOBAL and data_type in self._defaults:
            content = await self._defaults[data_type](user_id)
        if content is None:
            raise MatrixError(404, "M_NOT_FOUND", "Account data not found")
        return content

    async def changes(
        self, user_id: str, since: int, until: int, *, initial: bool = False
    ) -> list[AccountDataRow]:
        """Changes in `(since, until]`; on an initial sync also the defaults of types the user
        never set."""
        rows = await self._store.get_account_data_changes(user_id, since, until)
        if initial:
            stored = {row.type for row in rows if row.room_id == GLOBAL}
            for data_type, default in self._defaults.items():
                if data_type not in stored and (content := await default(user_id)) is not None:
                    rows.append(AccountDataRow(GLOBAL, data_type, content, 0))
        return rows

    # --- tags (C-S "Room Tagging") --------------------------------------------------------

    async def get_tags(self, user_id: str, room_id: str) -> dict[str, Any]:
        content = await self._store.get_account_data(user_id, room_id, TAG)
        tags = content.get("tags") if content else None
        return dict(tags) if isinstance(tags, Mapping) else {}

    async def set_tag(self, user_id: str, room_id: str, tag: str, info: Mapping[str, Any]) -> None:
        if not tag or len(tag.encode()) > MAX_TAG_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "A tag must be 1 to 255 bytes")
        order = info.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
            raise MatrixError(400, "M_INVALID_PARAM", "'order' must be a number")
        tags = await self.get_tags(user_id, room_id)
        tags[tag] = dict(info)
        await self.put(user_id, room_id, TAG, {"tags": tags})

    async def delete_tag(self, user_id: str, room_id: str, tag: str) -> None:
        tags = await self.get_tags(user_id, room_id)
        if tags.pop(tag, None) is not None:
            await self.put(user_id, room_id, TAG, {"tags": tags})
