"""Room summaries (C-S "Room Summaries", v1.15, `room_summary.yaml`), served by
homeserver/http/client/room_summary.py.

The summary (room_summary.yaml: the public rooms chunk plus room_version and encryption,
`allowed_room_ids` for restricted rooms, and the caller's `membership`) is built from the
room's current state here. Who may read it (MSC3266, as for the space hierarchy):
- anyone, without a token too, when the join rule is public, knock or knock_restricted, or
  the history is world_readable (the spec's conditions for unauthenticated access);
- a member (join, invite, knock, also leave/ban: they know the room);
- under a restricted join rule, a user joined to one of its allowed rooms.
Everyone else gets 404 `M_NOT_FOUND`, so nobody learns which private rooms exist.

A room this server has no state for is asked of other servers ("The servers to attempt to
request the summary from when the local server cannot generate it"): those in `via`, then
those an alias resolved to, then the server in a pre-v12 room ID, through S2S GET
/hierarchy/{roomId} (homeserver/services/remote_room_summary.py). The same rules apply to
its answer, with the user's membership as this server knows it (an invite or knock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

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
from homeserver.storage.room_directory import RoomDirectoryStore

# room_summary.yaml's fields (the public rooms chunk and its additions): what is kept of a
# remote server's hierarchy answer.
SUMMARY_FIELDS: Final = frozenset(
    {
        "room_id",
        "num_joined_members",
        "world_readable",
        "guest_can_join",
        "join_rule",
        "name",
        "topic",
        "canonical_alias",
        "avatar_url",
        "room_type",
        "allowed_room_ids",
        "encryption",
        "room_version",
    }
)
MAX_REMOTE_SERVERS: Final = 3

# `(room_id, servers)` → the room's summary from one of them, or None.
RemoteSummaryFetcher = Callable[[str, Sequence[str]], Awaitable[Mapping[str, Any] | None]]


def not_found() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Room not found.")


def open_to_anyone(state: StateMap) -> bool:
    return join_rule(state) in OPEN_JOIN_RULES or history_visibility(state) == "world_readable"


def remote_open_to_anyone(summary: Mapping[str, Any]) -> bool:
    return summary.get("join_rule") in OPEN_JOIN_RULES or summary.get("world_readable") is True


def room_id_server(room_id: str) -> list[str]:
    """The server part of a room ID before v12 (`!opaque:server`), where there is one."""
    _, colon, server = room_id.partition(":")
    return [server] if colon and server else []


class RoomSummaries:
    def __init__(
        self,
        state: RoomStateCache,
        aliases: AliasService,
        directory: RoomDirectoryStore,
        remote: RemoteSummaryFetcher | None = None,
    ) -> None:
        self._state = state
        self._aliases = aliases
        self._directory = directory
        self._remote = remote

    async def summary(
        self, room_id_or_alias: str, user_id: str | None, via: Sequence[str] = ()
    ) -> dict[str, Any]:
        """GET /room_summary/{roomIdOrAlias}."""
        room_id, alias_servers = await self._resolve(room_id_or_alias)
        state = await self._state.get_current_state(room_id)
        if not state:
            servers = [*via, *alias_servers, *room_id_server(room_id)]
            return await self._remote_summary(room_id, user_id, servers)
        member = state.get((MEMBER, user_id)) if user_id is not None else None
        membership = member.membership if member is not None else None
        restricted = join_rule(state) in RESTRICTED_JOIN_RULES
        if not (
            open_to_anyone(state)
            or membership is not None
            or (restricted and await self._joined_any(allowed_room_ids(state), user_id))
        ):
            raise not_found()
        summary = room_summary(room_id, state, suggested_only=False)
        summary.pop("children_state", None)  # a hierarchy field, not a summary one
        if membership is not None:
            summary["membership"] = membership
        return summary

    async def _remote_summary(
        self, room_id: str, user_id: str | None, servers: Sequence[str]
    ) -> dict[str, Any]:
        candidates = list(dict.fromkeys(servers))[:MAX_REMOTE_SERVERS]
        if self._remote is None or not candidates:
            raise not_found()
        answer = await self._remote(room_id, candidates)
        if answer is None:
            raise not_found()
        summary = {key: value for key, value in answer.items() if key in SUMMARY_FIELDS}
        membership = None
        if user_id is not None:
            known = await self._directory.get_local_membership_event(user_id, room_id)
            membership = known[0] if known is not None else None
        allowed = summary.get("allowed_room_ids")
        allowed_ids = (
            [r for r in allowed if isinstance(r, str)] if isinstance(allowed, list) else []
        )
        restricted = summary.get("join_rule") in RESTRICTED_JOIN_RULES
        if not (
            remote_open_to_anyone(summary)
            or membership is not None
            or (restricted and await self._joined_any(allowed_ids, user_id))
        ):
            raise not_found()
        if membership is not None:
            summary["membership"] = membership
        return summary

    async def _resolve(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """The room ID, and the servers an alias named (join candidates)."""
        if room_id_or_alias.startswith("!"):
            return room_id_or_alias, []
        if not room_id_or_alias.startswith("#"):
            raise MatrixError(400, "M_INVALID_PARAM", "Expected a room ID or a room alias")
        try:
            resolved = await self._aliases.resolve_alias(room_id_or_alias)
        except MatrixError as error:
            if error.status == 404:
                raise not_found() from None
            raise
        return resolved.room_id, list(resolved.servers)

    async def _joined_any(self, room_ids: Sequence[str], user_id: str | None) -> bool:
        """C-S "Restricted rooms": a member of an allowed room could join, so may look."""
        if user_id is None:
            return False
        for allowed in room_ids:
            found = await self._state.get_current_state(allowed, [(MEMBER, user_id)])
            event = found.get((MEMBER, user_id))
            if event is not None and event.membership == "join":
                return True
        return False
