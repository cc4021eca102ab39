"""The published room directory (C-S "Published room directory", list_public_rooms.yaml).

A room is published when `rooms.is_public` is set (by /createRoom `visibility` or
PUT /directory/list/room/{roomId}). Listing orders rooms by joined member count, largest first
(ties by room ID), and pages through them with `since`/`next_batch` tokens that are offsets
into that order.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_room_id
from federation.room_state import (
    StateMap,
    history_visibility,
    join_rule,
    named_power_level,
    required_power_level,
    room_creators,
    user_power_level,
)
from homeserver.errors import MatrixError
from homeserver.services.state import RoomStateCache
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.rooms import RoomsStore

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
_TOKEN: Final = re.compile(r"([np])([0-9]{1,9})")
# The state a directory entry is made of (never the member list).
_CHUNK_STATE: Final = [
    (t, "")
    for t in (
        "m.room.create",
        "m.room.name",
        "m.room.topic",
        "m.room.canonical_alias",
        "m.room.avatar",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.guest_access",
    )
]

# `(server, query) → response` for `server=` naming another server (federation, issue 5).
RemotePublicRooms = Callable[[str, "PublicRoomsQuery"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    # None: every room type; otherwise the room types to list (None in it: rooms with no type).
    room_types: Sequence[str | None] | None = None


def parse_public_rooms_filter(body: Mapping[str, Any]) -> PublicRoomsQuery:
    """The body of POST /publicRooms (M_BAD_JSON for wrong types)."""
    limit, since, filter_ = body.get("limit"), body.get("since"), body.get("filter")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise MatrixError(400, "M_BAD_JSON", "'limit' must be an integer")
    if since is not None and not isinstance(since, str):
        raise MatrixError(400, "M_BAD_JSON", "'since' must be a string")
    if filter_ is None:
        filter_ = {}
    if not isinstance(filter_, dict):
        raise MatrixError(400, "M_BAD_JSON", "'filter' must be an object")
    term, room_types = filter_.get("generic_search_term"), filter_.get("room_types")
    if term is not None and not isinstance(term, str):
        raise MatrixError(400, "M_BAD_JSON", "'generic_search_term' must be a string")
    if room_types is not None and (
        not isinstance(room_types, list)
        or not all(t is None or isinstance(t, str) for t in room_types)
    ):
        raise MatrixError(400, "M_BAD_JSON", "'room_types' must be a list of strings or nulls")
    return PublicRoomsQuery(limit, since, term or None, room_types)


def _offset_of(since: str | None) -> int:
    if since is None:
        return 0
    match = _TOKEN.fullmatch(since)
    if match is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid 'since' token")
    return int(match.group(2))


def _text(state: StateMap, event_type: str, key: str) -> str | None:
    event = state.get((event_type, ""))
    value = None if event is None else event.content.get(key)
    return value if isinstance(value, str) and value else None


def public_room_chunk(room_id: str, joined: int, state: StateMap) -> dict[str, Any]:
    """One entry of `chunk` (public_rooms_chunk.yaml) from the room's current state."""
    chunk: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": joined,
        "world_readable": history_visibility(state) == "world_readable",
        "guest_can_join": _text(state, "m.room.guest_access", "guest_access") == "can_join",
        "join_rule": join_rule(state),
    }
    for field, event_type, key in (
        ("name", "m.room.name", "name"),
        ("topic", "m.room.topic", "topic"),
        ("canonical_alias", "m.room.canonical_alias", "alias"),
        ("avatar_url", "m.room.avatar", "url"),
        ("room_type", "m.room.create", "type"),
    ):
        value = _text(state, event_type, key)
        if value is not None:
            chunk[field] = value
    return chunk


def _matches(chunk: Mapping[str, Any], query: PublicRoomsQuery) -> bool:
    if query.room_types is not None and chunk.get("room_type") not in query.room_types:
        return False
    if query.search_term is None:
        return True
    term = query.search_term.casefold()
    fields = ("name", "topic", "canonical_alias", "room_id")
    return any(term in str(chunk.get(f, "")).casefold() for f in fields)


class RoomDirectoryService:
    def __init__(
        self,
        *,
        rooms: RoomsStore,
        directory: RoomDirectoryStore,
        state: RoomStateCache,
        server_name: str,
        remote_public_rooms: RemotePublicRooms | None = None,
    ) -> None:
        self._rooms = rooms
        self._directory = directory
        self._state = state
        self._server_name = server_name
        self._remote_public_rooms = remote_public_rooms

    async def get_visibility(self, room_id: str) -> str:
        """GET /directory/list/room/{roomId}."""
        if not is_valid_room_id(room_id) or await self._rooms.get_room_version(room_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", "Room not found")
        return "public" if await self._rooms.is_room_public(room_id) else "private"

    async def set_visibility(
        self, requester: str, is_admin: bool, room_id: str, visibility: str
    ) -> None:
        """PUT /directory/list/room/{roomId}: by a server admin, a room creator, or a member
        who may change the room's canonical alias (the level that governs how it is found)."""
        if visibility not in ("public", "private"):
            raise MatrixError(400, "M_INVALID_PARAM", "visibility must be 'public' or 'private'")
        if not is_valid_room_id(room_id):
            raise MatrixError(404, "M_NOT_FOUND", "Room not found")
        state = await self._state.get_current_state(room_id)
        if not state:
            raise MatrixError(404, "M_NOT_FOUND", "Room not found")
        may_publish = requester in room_creators(state) or user_power_level(
            state, requester
        ) >= max(
            required_power_level(state, "m.room.canonical_alias", True),
            named_power_level(state, "state_default"),
        )
        if not is_admin and not may_publish:
            raise MatrixError(403, "M_FORBIDDEN", "You may not change this room's visibility")
        await self._rooms.set_room_is_public(room_id, visibility == "public")

    async def list_public_rooms(
        self, query: PublicRoomsQuery, server: str | None = None
    ) -> dict[str, Any]:
        """GET and POST /publicRooms."""
        if server is not None and server != self._server_name:
            if self._remote_public_rooms is None:
                raise MatrixError(404, "M_NOT_FOUND", f"Cannot list the rooms of {server}")
            return await self._remote_public_rooms(server, query)
        if query.limit is not None and query.limit < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "'limit' must not be negative")
        limit = min(query.limit or DEFAULT_LIMIT, MAX_LIMIT)
        offset = _offset_of(query.since)
        chunks: list[dict[str, Any]] = []
        for room_id, joined in await self._directory.get_public_rooms():
            state = await self._state.get_current_state(room_id, _CHUNK_STATE)
            chunk = public_room_chunk(room_id, joined, state)
            if _matches(chunk, query):
                chunks.append(chunk)
        page = chunks[offset : offset + limit]
        response: dict[str, Any] = {"chunk": page, "total_room_count_estimate": len(chunks)}
        if offset + limit < len(chunks):
            response["next_batch"] = f"n{offset + limit}"
        if offset > 0:
            response["prev_batch"] = f"p{max(offset - limit, 0)}"
        return response
