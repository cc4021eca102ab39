"""Room membership: join, invite, leave, kick, ban, unban, knock, forget (C-S "Room membership").

Every change is an `m.room.member` event through the event pipeline, whose auth rules have the
last word (403 M_FORBIDDEN with their reason). The checks here come first only where the spec
asks for a different answer (already invited → 200; forget while joined → 400) or a clearer one.

Rooms this server is not in need federation (make_join/send_join …): `RemoteMembership`, None
until the federation layer provides one, in which case those requests fail with 404
"No known servers". Inviting a user of another server needs `RemoteMembership.invite`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import asyncpg

from federation.ids import is_valid_room_id, is_valid_user_id, server_name_of
from federation.room_state import (
    StateMap,
    join_rule,
    membership_of,
    named_power_level,
    user_power_level,
)
from federation.room_versions import RoomVersion
from homeserver.errors import MatrixError
from homeserver.services.aliases import AliasService
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.profiles import ProfileService
from homeserver.services.state import RoomStateCache
from homeserver.storage import users
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.rooms import RoomsStore

MEMBER: Final = "m.room.member"
JOIN_AUTHORISED_VIA: Final = "join_authorised_via_users_server"


class RemoteMembership(Protocol):
    """Membership changes that need other servers (issue 5, the federation layer)."""

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        """Join a room this server is not in (make_join/send_join); return the join event ID."""
        ...

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        """Knock on a room this server is not in (make_knock/send_knock)."""
        ...

    async def leave(self, user_id: str, room_id: str, content: Mapping[str, Any]) -> str:
        """Reject an invite or retract a knock for a room this server is not in."""
        ...

    async def invite(
        self, sender: str, room_id: str, target: str, content: Mapping[str, Any]
    ) -> str:
        """Invite a user of another server into a room here (S2S /invite); return the event
        ID once the invite, signed by the invitee's server, is persisted."""
        ...


def no_known_servers(room: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", f"No known servers for {room}")


def _check_guest_can_join(state: Mapping[tuple[str, str], Any] | None) -> None:
    """C-S "Guest Access": guests join only rooms whose `m.room.guest_access` is `can_join`
    (a room on another server cannot be checked here, so it is refused)."""
    event = None if state is None else state.get(("m.room.guest_access", ""))
    if event is None or event.content.get("guest_access") != "can_join":
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")


def _with_reason(content: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason is not None:
        content["reason"] = reason
    return content


class MembershipService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        pipeline: EventPipeline,
        state: RoomStateCache,
        rooms: RoomsStore,
        directory: RoomDirectoryStore,
        aliases: AliasService,
        profiles: ProfileService,
        server_name: str,
        remote: RemoteMembership | None = None,
    ) -> None:
        self._pool = pool
        self._pipeline = pipeline
        self._state = state
        self._rooms = rooms
        self._directory = directory
        self._aliases = aliases
        self._profiles = profiles
        self._server_name = server_name
        self._remote = remote

    @property
    def can_invite_remote_users(self) -> bool:
        return self._remote is not None

    def _is_local(self, user_id: str) -> bool:
        return server_name_of(user_id) == self._server_name

    async def check_local_user_exists(self, user_id: str) -> None:
        user = await users.get_user(self._pool, user_id)
        if user is None or user.deactivated:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown user {user_id}")

    # --- rooms and their state ------------------------------------------------------------

    async def _state_if_participating(self, room_id: str) -> StateMap | None:
        """The room's current state if this server can write to the room on its own: a local
        user is joined, or nobody on another server is (then our copy is the room)."""
        state = await self._state.get_current_state(room_id)
        if not state:
            return None
        joined = [key for (t, key), e in state.items() if t == MEMBER and e.membership == "join"]
        if any(self._is_local(u) for u in joined) or all(self._is_local(u) for u in joined):
            return state
        return None

    async def _known_room_state(self, room_id: str) -> StateMap:
        if not is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room ID {room_id!r}")
        state = await self._state.get_current_state(room_id)
        if not state:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        return state

    async def resolve_room(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """A room ID or alias → `(room_id, servers to try)`."""
        if room_id_or_alias.startswith("#"):
            resolved = await self._aliases.resolve_alias(room_id_or_alias)
            return resolved.room_id, resolved.servers
        if not is_valid_room_id(room_id_or_alias):
            raise MatrixError(
                400, "M_INVALID_PARAM", f"Invalid room ID or alias {room_id_or_alias!r}"
            )
        # v1–v11 room IDs name the server that created the room: a good first guess.
        servers = [server_name_of(room_id_or_alias)] if ":" in room_id_or_alias else []
        return room_id_or_alias, servers

    async def _send(self, room_id: str, sender: str, target: str, content: dict[str, Any]) -> str:
        event = await self._pipeline.create_local_event(room_id, MEMBER, sender, content, target)
        return str(event.event_id)

    # --- join and knock -------------------------------------------------------------------

    async def join(
        self,
        user_id: str,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        via: Sequence[str] = (),
        guest: bool = False,
    ) -> str:
        """POST /join/{roomIdOrAlias} and /rooms/{roomId}/join; returns the room ID."""
        room_id, servers = await self.resolve_room(room_id_or_alias)
        content = _with_reason(
            {"membership": "join", **await self._profiles.member_profile(user_id)}, reason
        )
        state = await self._state_if_participating(room_id)
        if guest:
            _check_guest_can_join(state)
        if state is None:
            if self._remote is None:
                raise no_known_servers(room_id_or_alias)
            await self._remote.join(user_id, room_id, [*via, *servers], content)
            return room_id
        current = state.get((MEMBER, user_id))
        if current is not None and current.membership == "join":
            unchanged = {k: v for k, v in current.content.items() if k != "reason"}
            if unchanged == {k: v for k, v in content.items() if k != "reason"}:
                return room_id  # already joined, nothing to change
        authoriser = await self._restricted_join_authoriser(room_id, user_id, state)
        if authoriser is not None:
            content[JOIN_AUTHORISED_VIA] = authoriser
        await self._send(room_id, user_id, user_id, content)
        return room_id

    async def _restricted_join_authoriser(
        self, room_id: str, user_id: str, state: StateMap
    ) -> str | None:
        """C-S "Restricted rooms": without an invite, the user must be joined to one of the
        rooms the join rules allow; a local member who may invite then authorises the join."""
        room_version: RoomVersion = next(iter(state.values())).room_version
        rule = join_rule(state)
        restricted = (rule == "restricted" and room_version.restricted_join_rule) or (
            rule == "knock_restricted" and room_version.knock_restricted_join_rule
        )
        if not restricted or membership_of(state, user_id) in ("join", "invite"):
            return None
        rules = state[("m.room.join_rules", "")].content
        allowed = {
            c.get("room_id")
            for c in rules.get("allow") or []
            if isinstance(c, Mapping) and c.get("type") == "m.room_membership"
        }
        if not allowed & await self._rooms.get_rooms_for_user(user_id, ("join",)):
            raise MatrixError(403, "M_FORBIDDEN", "You do not meet the room's join conditions")
        invite_level = named_power_level(state, "invite")
        for (event_type, member), event in state.items():
            if (
                event_type == MEMBER
                and event.membership == "join"
                and self._is_local(member)
                and user_power_level(state, member) >= invite_level
            ):
                return member
        raise MatrixError(403, "M_FORBIDDEN", f"No user of {self._server_name} can admit you")

    async def knock(
        self,
        user_id: str,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        via: Sequence[str] = (),
    ) -> str:
        """POST /knock/{roomIdOrAlias}; returns the room ID."""
        room_id, servers = await self.resolve_room(room_id_or_alias)
        content = _with_reason(
            {"membership": "knock", **await self._profiles.member_profile(user_id)}, reason
        )
        state = await self._state_if_participating(room_id)
        if state is None:
            if self._remote is None:
                raise no_known_servers(room_id_or_alias)
            await self._remote.knock(user_id, room_id, [*via, *servers], content)
            return room_id
        # C-S "Knocking on rooms": members, invitees and banned users cannot knock.
        if membership_of(state, user_id) in ("join", "invite", "ban"):
            raise MatrixError(403, "M_FORBIDDEN", "You cannot knock on this room")
        await self._send(room_id, user_id, user_id, content)
        return room_id

    # --- invite, leave, kick, ban, unban --------------------------------------------------

    async def invite(
        self,
        sender: str,
        room_id: str,
        target: str,
        *,
        reason: str | None = None,
        is_direct: bool = False,
    ) -> None:
        """POST /rooms/{roomId}/invite; inviting someone already invited is a no-op (200)."""
        if not is_valid_user_id(target, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user ID {target!r}")
        state = await self._known_room_state(room_id)
        if membership_of(state, sender) != "join":
            raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
        current = membership_of(state, target)
        if current == "invite":
            return
        if current == "ban":
            raise MatrixError(403, "M_FORBIDDEN", f"{target} is banned from the room")
        if current == "join":
            raise MatrixError(403, "M_FORBIDDEN", f"{target} is already in the room")
        content: dict[str, Any] = {"membership": "invite"}
        if is_direct:
            content["is_direct"] = True
        _with_reason(content, reason)
        if not self._is_local(target):
            if self._remote is None:
                raise MatrixError(
                    403, "M_FORBIDDEN", "Users of other servers cannot be invited: no federation"
                )
            await self._remote.invite(sender, room_id, target, content)
            return
        await self.check_local_user_exists(target)
        content.update(await self._profiles.member_profile(target))
        await self._send(room_id, sender, target, content)

    async def leave(self, user_id: str, room_id: str, *, reason: str | None = None) -> None:
        """POST /rooms/{roomId}/leave: leave, reject an invite or retract a knock. Leaving a
        room one is not in (any more) changes nothing."""
        if not is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room ID {room_id!r}")
        content = _with_reason({"membership": "leave"}, reason)
        state = await self._state_if_participating(room_id)
        if state is None:
            local = await self._directory.get_local_membership_event(user_id, room_id)
            if local is None or local[0] in ("leave", "ban"):
                if local is None and not await self._state.get_current_state(room_id):
                    raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
                return
            if self._remote is None:
                raise no_known_servers(room_id)
            await self._remote.leave(user_id, room_id, content)
            return
        current = membership_of(state, user_id)
        if current == "leave":
            return
        if current == "ban":
            raise MatrixError(403, "M_FORBIDDEN", "You are banned from this room")
        await self._send(room_id, user_id, user_id, content)

    async def kick(
        self, sender: str, room_id: str, target: str, *, reason: str | None = None
    ) -> None:
        """POST /rooms/{roomId}/kick: the target must be in the room (joined, invited or
        knocking); the auth rules check the power levels."""
        state = await self._target_state(room_id, target)
        if membership_of(state, target) not in ("join", "invite", "knock"):
            raise MatrixError(403, "M_FORBIDDEN", f"{target} is not in the room")
        await self._send(room_id, sender, target, _with_reason({"membership": "leave"}, reason))

    async def ban(
        self, sender: str, room_id: str, target: str, *, reason: str | None = None
    ) -> None:
        """POST /rooms/{roomId}/ban (any user, in the room or not)."""
        await self._target_state(room_id, target)
        await self._send(room_id, sender, target, _with_reason({"membership": "ban"}, reason))

    async def unban(
        self, sender: str, room_id: str, target: str, *, reason: str | None = None
    ) -> None:
        """POST /rooms/{roomId}/unban: a banned user's membership becomes `leave`."""
        state = await self._target_state(room_id, target)
        if membership_of(state, target) != "ban":
            raise MatrixError(403, "M_FORBIDDEN", f"{target} is not banned")
        await self._send(room_id, sender, target, _with_reason({"membership": "leave"}, reason))

    async def _target_state(self, room_id: str, target: str) -> StateMap:
        if not is_valid_user_id(target, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user ID {target!r}")
        return await self._known_room_state(room_id)

    # --- forget, joined rooms -------------------------------------------------------------

    async def forget(self, user_id: str, room_id: str) -> None:
        """POST /rooms/{roomId}/forget: only after leaving (400 M_UNKNOWN while still in it)."""
        if not is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room ID {room_id!r}")
        current = await self._directory.get_local_membership_event(user_id, room_id)
        if current is None:
            raise MatrixError(404, "M_NOT_FOUND", "You have never been in this room")
        membership, event_id = current
        if membership not in ("leave", "ban"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self._directory.forget_room(user_id, room_id, event_id)

    async def joined_rooms(self, user_id: str) -> list[str]:
        """GET /joined_rooms."""
        return sorted(await self._rooms.get_rooms_for_user(user_id, ("join",)))
