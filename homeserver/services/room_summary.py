"""Room summaries (C-S "Room Summaries", v1.15, `room_summary.yaml`), served by
homeserver/http/client/room_summary.py.

The summary (room_summary.yaml: the public rooms chunk plus room_version and encryption,
`allowed_room_ids` for restricted rooms, and the caller's `membership`) is built from the
room's current state here. Who may read it (MSC3266, as for the space hierarchy):
- anyone, without a token too, when the join rule is public, knock or knock_restricted, or
  the history is world_readable (the spec's conditions for unauthenticated access);
- a member (join, invite, knock, also leave/ban: they know the room);
- under a restricted join rule, a user joined to one of its allowed rooms.
Everyone else, and rooms this server has no state for (`via` is not followed yet), get 404
`M_NOT_FOUND`, so nobody learns which private rooms exist.
"""

from __future__ import annotations

from typing import Any

from federation.room_state import MEMBER, StateMap, history_visibility, join_rule
from homeserver.errors import MatrixError
from homeserver.services.aliases import AliasService
from homeserver.services.space_hierarchy import (
    OPEN_JOIN_RULES,
    RESTRICTED_JOIN_RULES,
    allowed_room_ids,
    room_summary,
)
from homeserver.services.state import RoomStateCache


def not_found() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Room not found.")


def open_to_anyone(state: StateMap) -> bool:
    return join_rule(state) in OPEN_JOIN_RULES or history_visibility(state) == "world_readable"


class RoomSummaries:
    def __init__(self, state: RoomStateCache, aliases: AliasService) -> None:
        self._state = state
        self._aliases = aliases

    async def summary(self, room_id_or_alias: str, user_id: str | None) -> dict[str, Any]:
        room_id = await self._room_id(room_id_or_alias)
        state = await self._state.get_current_state(room_id) if room_id else None
        if not state:
            raise not_found()
        member = state.get((MEMBER, user_id)) if user_id is not None else None
        membership = member.membership if member is not None else None
        if not (
            open_to_anyone(state)
            or membership is not None
            or (user_id is not None and await self._allowed_by_rooms(state, user_id))
        ):
            raise not_found()
        summary = room_summary(room_id, state, suggested_only=False)
        summary.pop("children_state", None)  # a hierarchy field, not a summary one
        if membership is not None:
            summary["membership"] = membership
        return summary

    async def _room_id(self, room_id_or_alias: str) -> str | None:
        if room_id_or_alias.startswith("!"):
            return room_id_or_alias
        if not room_id_or_alias.startswith("#"):
            raise MatrixError(400, "M_INVALID_PARAM", "Expected a room ID or a room alias")
        try:
            return (await self._aliases.resolve_alias(room_id_or_alias)).room_id
        except MatrixError as error:
            if error.status == 404:
                raise not_found() from None
            raise

    async def _allowed_by_rooms(self, state: StateMap, user_id: str) -> bool:
        """C-S "Restricted rooms": a member of an allowed room could join, so may look."""
        if join_rule(state) not in RESTRICTED_JOIN_RULES:
            return False
        for allowed in allowed_room_ids(state):
            found = await self._state.get_current_state(allowed, [(MEMBER, user_id)])
            event = found.get((MEMBER, user_id))
            if event is not None and event.membership == "join":
                return True
        return False
