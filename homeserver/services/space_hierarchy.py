"""Space hierarchies from this server's view of rooms: C-S "Spaces" (`GET /v1/rooms/{roomId}/
hierarchy`, space_hierarchy.yaml) and S2S "Spaces" (`GET /v1/hierarchy/{roomId}`).

Only `m.space.child` state events are considered; a child event whose `content.via` is not a
non-empty list of server names is invalid and ignored (C-S `m.space.child`). Only rooms this
server knows (has current state for) are described; others are left out, as the S2S endpoint
allows ("Rooms which the responding server cannot provide details on will be outright
excluded"). Fetching unknown children from other servers is not done yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from federation.ids import server_name_of
from federation.room_state import MEMBER, StateMap, history_visibility, join_rule
from homeserver.errors import MatrixError
from homeserver.services.room_directory import public_room_chunk
from homeserver.services.state import RoomStateCache

SPACE_CHILD: Final = "m.space.child"
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
DEFAULT_MAX_DEPTH: Final = 3
MAX_DEPTH: Final = 10
# Rooms walked per client request at most, whatever the tree's size.
MAX_ROOMS_WALKED: Final = 500
# Join rules under which anyone may knock or join: the room may be shown to anyone.
OPEN_JOIN_RULES: Final = frozenset({"public", "knock", "knock_restricted"})
RESTRICTED_JOIN_RULES: Final = frozenset({"restricted", "knock_restricted"})


@dataclass(frozen=True, slots=True)
class SpaceChild:
    room_id: str
    suggested: bool
    order: str | None
    origin_server_ts: int
    stripped: dict[str, Any]


def _valid_order(value: Any) -> str | None:
    """C-S `m.space.child` `order`: up to 50 characters of U+0020–U+007E, else ignored."""
    if isinstance(value, str) and len(value) <= 50 and all(" " <= c <= "~" for c in value):
        return value
    return None


def space_children(state: StateMap, *, suggested_only: bool) -> list[SpaceChild]:
    """The valid `m.space.child` events, ordered as C-S "Ordering of children within a space"
    says: by `order` (those with one first), then `origin_server_ts`, then room ID."""
    children = []
    for (event_type, state_key), event in state.items():
        if event_type != SPACE_CHILD:
            continue
        via = event.content.get("via")
        if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
            continue
        suggested = event.content.get("suggested") is True
        if suggested_only and not suggested:
            continue
        stripped = {
            "type": SPACE_CHILD,
            "state_key": state_key,
            "sender": event.sender,
            "content": dict(event.content),
            "origin_server_ts": event.origin_server_ts,
        }
        order = _valid_order(event.content.get("order"))
        children.append(SpaceChild(state_key, suggested, order, event.origin_server_ts, stripped))
    children.sort(key=lambda c: (c.order is None, c.order or "", c.origin_server_ts, c.room_id))
    return children


def allowed_room_ids(state: StateMap) -> list[str]:
    """Rooms whose members may join a restricted room (`m.room_membership` allow entries)."""
    event = state.get(("m.room.join_rules", ""))
    allow = [] if event is None else event.content.get("allow")
    if not isinstance(allow, list):
        return []
    return [
        entry["room_id"]
        for entry in allow
        if isinstance(entry, dict)
        and entry.get("type") == "m.room_membership"
        and isinstance(entry.get("room_id"), str)
    ]


def _joined_members(state: StateMap) -> list[str]:
    return [
        key
        for (event_type, key), event in state.items()
        if event_type == MEMBER and event.membership == "join"
    ]


def room_summary(room_id: str, state: StateMap, *, suggested_only: bool) -> dict[str, Any]:
    """room_summary.yaml plus `children_state`, `room_version`, `encryption`, and for
    restricted rooms `allowed_room_ids` (S2S space_hierarchy.yaml)."""
    summary = public_room_chunk(room_id, len(_joined_members(state)), state)
    create = state.get(("m.room.create", ""))
    if create is not None:
        summary["room_version"] = create.room_version.identifier
    encryption = state.get(("m.room.encryption", ""))
    algorithm = None if encryption is None else encryption.content.get("algorithm")
    if isinstance(algorithm, str):
        summary["encryption"] = algorithm
    if join_rule(state) in RESTRICTED_JOIN_RULES:
        summary["allowed_room_ids"] = allowed_room_ids(state)
    children = space_children(state, suggested_only=suggested_only)
    summary["children_state"] = [c.stripped for c in children]
    return summary


def _parse_token(token: str, suggested_only: bool, max_depth: int) -> int:
    """`from`: an offset into the walk, bound to the first request's parameters."""
    parts = token.split("_")
    if len(parts) != 3 or parts[1] != str(int(suggested_only)) or parts[2] != str(max_depth):
        raise MatrixError(400, "M_INVALID_PARAM", "from token does not match this request")
    offset = parts[0]
    if not offset.isascii() or not offset.isdigit() or len(offset) > 9:
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown from token")
    return int(offset)


class SpaceHierarchy:
    def __init__(self, state: RoomStateCache) -> None:
        self._state = state

    async def _room(self, room_id: str) -> StateMap | None:
        state = await self._state.get_current_state(room_id)
        return state or None

    # --- who may see a room ---------------------------------------------------------------

    async def _user_may_see(self, user_id: str, state: StateMap) -> bool:
        """C-S GET /hierarchy `rooms`: a member, invited, allowed to join or knock, or the
        room is world readable."""
        member = state.get((MEMBER, user_id))
        if member is not None and member.membership in ("join", "invite"):
            return True
        rule = join_rule(state)
        if rule in OPEN_JOIN_RULES or history_visibility(state) == "world_readable":
            return True
        if rule in RESTRICTED_JOIN_RULES:
            for allowed in allowed_room_ids(state):
                allowed_state = await self._state.get_current_state(allowed, [(MEMBER, user_id)])
                event = allowed_state.get((MEMBER, user_id))
                if event is not None and event.membership == "join":
                    return True
        return False

    def _server_may_see(self, origin: str, state: StateMap) -> bool:
        """S2S GET /hierarchy: rooms the requesting server "could feasibly peek/join": world
        readable, open to join or knock, restricted (the requester filters by
        `allowed_room_ids`), or with a user of that server joined."""
        rule = join_rule(state)
        if rule in OPEN_JOIN_RULES or rule in RESTRICTED_JOIN_RULES:
            return True
        if history_visibility(state) == "world_readable":
            return True
        return any(server_name_of(u) == origin for u in _joined_members(state) if ":" in u)

    # --- S2S ------------------------------------------------------------------------------

    async def federation_hierarchy(
        self, origin: str, room_id: str, *, suggested_only: bool
    ) -> dict[str, Any]:
        """GET /_matrix/federation/v1/hierarchy/{roomId}: the room and its direct children,
        without pagination; 404 if unknown here or not visible to `origin`."""
        state = await self._room(room_id)
        if state is None or not self._server_may_see(origin, state):
            raise MatrixError(404, "M_NOT_FOUND", "Room not found or not accessible")
        room = room_summary(room_id, state, suggested_only=suggested_only)
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for child in space_children(state, suggested_only=suggested_only):
            child_state = await self._room(child.room_id)
            if child_state is None:
                continue  # no details to give: left out
            if not self._server_may_see(origin, child_state):
                inaccessible.append(child.room_id)
                continue
            summary = room_summary(child.room_id, child_state, suggested_only=suggested_only)
            children.append(summary)
        return {"room": room, "children": children, "inaccessible_children": inaccessible}

    # --- C-S ------------------------------------------------------------------------------

    async def client_hierarchy(
        self,
        user_id: str,
        room_id: str,
        *,
        suggested_only: bool,
        limit: int | None,
        max_depth: int | None,
        from_token: str | None,
    ) -> dict[str, Any]:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy: a depth-first walk from the room
        over the rooms the user may see; 403 if the user may not see the room itself."""
        if limit is not None and limit < 1:
            raise MatrixError(400, "M_INVALID_PARAM", "limit must be greater than zero")
        if max_depth is not None and max_depth < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "max_depth must not be negative")
        depth_limit = min(DEFAULT_MAX_DEPTH if max_depth is None else max_depth, MAX_DEPTH)
        page_size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        offset = 0 if from_token is None else _parse_token(from_token, suggested_only, depth_limit)
        state = await self._room(room_id)
        if state is None or not await self._user_may_see(user_id, state):
            raise MatrixError(403, "M_FORBIDDEN", "You may not see this room's hierarchy")
        rooms = await self._walk(user_id, room_id, state, suggested_only, depth_limit)
        page = rooms[offset : offset + page_size]
        response: dict[str, Any] = {"rooms": page}
        if offset + page_size < len(rooms):
            response["next_batch"] = f"{offset + page_size}_{int(suggested_only)}_{depth_limit}"
        return response

    async def _walk(
        self,
        user_id: str,
        room_id: str,
        state: StateMap,
        suggested_only: bool,
        depth_limit: int,
    ) -> list[dict[str, Any]]:
        """Depth first, each room once (spaces may form cycles), children at `depth_limit`
        not expanded."""
        found: list[dict[str, Any]] = []
        seen = {room_id}
        stack: list[tuple[str, StateMap, int]] = [(room_id, state, 0)]
        while stack and len(found) < MAX_ROOMS_WALKED:
            current_id, current, depth = stack.pop()
            summary = room_summary(current_id, current, suggested_only=suggested_only)
            found.append(summary)
            if depth >= depth_limit:
                continue
            pending: list[tuple[str, StateMap, int]] = []
            for child in space_children(current, suggested_only=suggested_only):
                if child.room_id in seen:
                    continue
                seen.add(child.room_id)
                child_state = await self._room(child.room_id)
                if child_state is None or not await self._user_may_see(user_id, child_state):
                    continue
                pending.append((child.room_id, child_state, depth + 1))
            stack.extend(reversed(pending))
        return found


def parse_bool_param(value: str | None, name: str) -> bool:
    """`suggested_only`-style query flags: `true` / `false` (absent: false)."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be true or false")


def parse_int_param(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    text = value.lstrip("-")
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer")
    return int(value)
