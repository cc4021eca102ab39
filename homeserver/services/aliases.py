"""Room aliases: create, resolve, delete, list (C-S "Room aliases"), and the checks on
`m.room.canonical_alias` content (C-S `PUT /rooms/{roomId}/state/...`).

Only aliases on this server's domain are created here. Resolving an alias of another server
needs the federation directory query: `RemoteDirectoryQuery`, None until the federation layer
provides one (such aliases are then "not found").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_room_alias, is_valid_room_id, server_name_of
from federation.room_state import history_visibility, membership_of, required_power_level
from federation.room_state import user_power_level as power_of
from homeserver.errors import MatrixError
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.state import RoomStateCache
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.rooms import RoomsStore

logger = logging.getLogger(__name__)

CANONICAL_ALIAS: Final = "m.room.canonical_alias"


@dataclass(frozen=True, slots=True)
class ResolvedAlias:
    room_id: str
    # Servers that are aware of the room (and so can be asked to join it), this one first.
    servers: list[str]


# `(alias) → the room and servers`, or None if the remote server has no such alias.
RemoteDirectoryQuery = Callable[[str], Awaitable[ResolvedAlias | None]]


def now_ms() -> int:
    return int(time.time() * 1000)


def check_alias_syntax(alias: str) -> None:
    """Appendices "Room Aliases": `#localpart:server_name`, at most 255 bytes."""
    if not is_valid_room_alias(alias):
        raise MatrixError(400, "M_INVALID_PARAM", f"Room alias {alias!r} is not valid")


def alias_not_found(alias: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", f"Room alias {alias} not found")


class AliasService:
    def __init__(
        self,
        *,
        aliases: AliasesStore,
        rooms: RoomsStore,
        state: RoomStateCache,
        pipeline: EventPipeline,
        server_name: str,
        remote_directory: RemoteDirectoryQuery | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._aliases = aliases
        self._rooms = rooms
        self._state = state
        self._pipeline = pipeline
        self._server_name = server_name
        self._remote_directory = remote_directory
        self._clock = clock

    def is_local(self, alias: str) -> bool:
        return server_name_of(alias) == self._server_name

    async def create_alias(self, requester: str, alias: str, room_id: str) -> None:
        """PUT /directory/room/{roomAlias}: 409 if the alias is taken. The requester must be
        joined to the room (so that nobody can point names at rooms they are not in)."""
        check_alias_syntax(alias)
        if not self.is_local(alias):
            raise MatrixError(400, "M_INVALID_PARAM", "Aliases can only be created on this server")
        if not is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room ID {room_id!r}")
        state = await self._state.get_current_state(room_id)
        if not state:
            raise MatrixError(404, "M_NOT_FOUND", f"Room {room_id} not found")
        if membership_of(state, requester) != "join":
            raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
        await self.create_alias_unchecked(requester, alias, room_id)

    async def create_alias_unchecked(self, creator: str, alias: str, room_id: str) -> None:
        """Store the mapping; 409 if taken (/createRoom checks first and answers 400)."""
        if not await self._aliases.create_alias(alias, room_id, creator, self._clock()):
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists")

    async def alias_exists(self, alias: str) -> bool:
        return await self._aliases.get_alias(alias) is not None

    async def resolve_alias(self, alias: str) -> ResolvedAlias:
        """GET /directory/room/{roomAlias}: the room ID and servers that know the room."""
        check_alias_syntax(alias)
        if not self.is_local(alias):
            resolved = None
            if self._remote_directory is not None:
                resolved = await self._remote_directory(alias)
            if resolved is None:
                raise alias_not_found(alias)
            return resolved
        mapping = await self._aliases.get_alias(alias)
        if mapping is None:
            raise alias_not_found(alias)
        return ResolvedAlias(mapping.room_id, await self.servers_in_room(mapping.room_id))

    async def servers_in_room(self, room_id: str) -> list[str]:
        """Servers with joined members, this server first."""
        members = await self._rooms.get_members(room_id, ("join",))
        others = sorted({server_name_of(u) for u in members} - {self._server_name})
        return [self._server_name, *others]

    async def delete_alias(self, requester: str, is_admin: bool, alias: str) -> None:
        """DELETE /directory/room/{roomAlias}: by its creator, a server admin, or a member
        who may change the room's canonical alias. A canonical alias event listing it is
        updated too, when the requester may send one (directory.yaml, the note on DELETE)."""
        check_alias_syntax(alias)
        mapping = await self._aliases.get_alias(alias) if self.is_local(alias) else None
        if mapping is None:
            raise alias_not_found(alias)
        state = await self._state.get_current_state(mapping.room_id)
        may_edit_room = membership_of(state, requester) == "join" and power_of(
            state, requester
        ) >= required_power_level(state, CANONICAL_ALIAS, True)
        if requester != mapping.creator and not is_admin and not may_edit_room:
            raise MatrixError(403, "M_FORBIDDEN", "You may not delete this alias")
        if not await self._aliases.delete_alias(alias):
            raise alias_not_found(alias)  # deleted concurrently
        await self._remove_from_canonical_alias(mapping.room_id, requester, alias)

    async def _remove_from_canonical_alias(self, room_id: str, sender: str, alias: str) -> None:
        state = await self._state.get_current_state(room_id, [(CANONICAL_ALIAS, "")])
        event = state.get((CANONICAL_ALIAS, ""))
        if event is None:
            return
        content = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self._pipeline.create_local_event(room_id, CANONICAL_ALIAS, sender, content, "")
        except MatrixError as e:
            # The alias is gone either way; the room's published aliases stay as they were.
            logger.info(
                "canonical alias of %s not updated after deleting %s: %s", room_id, alias, e
            )

    async def local_aliases(self, requester: str, room_id: str) -> list[str]:
        """GET /rooms/{roomId}/aliases: for members, or anyone if history is world_readable."""
        if not is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room ID {room_id!r}")
        state = await self._state.get_current_state(room_id)
        allowed = membership_of(state, requester) == "join" or (
            bool(state) and history_visibility(state) == "world_readable"
        )
        if not allowed:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")
        return await self._aliases.get_aliases_for_room(room_id)

    async def check_canonical_alias(
        self, room_id: str, content: Mapping[str, Any], previous: Mapping[str, Any] | None
    ) -> None:
        """New aliases in an `m.room.canonical_alias` event must be valid (M_INVALID_PARAM)
        and point at this room (M_BAD_ALIAS); removed or unchanged ones are not checked."""
        old = set(_listed_aliases(previous or {}))
        for alias in _listed_aliases(content):
            if alias in old:
                continue
            if not isinstance(alias, str):
                raise MatrixError(400, "M_INVALID_PARAM", "Aliases must be strings")
            check_alias_syntax(alias)
            try:
                resolved = await self.resolve_alias(alias)
            except MatrixError:
                resolved = None
            if resolved is None or resolved.room_id != room_id:
                raise MatrixError(
                    400, "M_BAD_ALIAS", f"The alias {alias} does not point to this room"
                )


def _listed_aliases(content: Mapping[str, Any]) -> Sequence[Any]:
    """`alias` and `alt_aliases` of canonical alias content (malformed entries included)."""
    listed: list[Any] = []
    alias = content.get("alias")
    if alias is not None:
        listed.append(alias)
    alt = content.get("alt_aliases")
    if alt is not None:
        if not isinstance(alt, list):
            raise MatrixError(400, "M_INVALID_PARAM", "alt_aliases must be a list")
        listed.extend(alt)
    return listed
