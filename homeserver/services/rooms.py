"""Room creation: POST /createRoom (C-S "Creation", create_room.yaml).

The request is parsed into a `CreateRoomRequest`, turned into the list of initial events in the
order the spec gives, and persisted in one transaction by the event pipeline: a room exists with
all its initial state and local invites, or not at all. Remote invitees need federation
(`RemoteInviter`, homeserver/services/membership.py): they are invited once the room exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from federation.ids import is_valid_room_alias, is_valid_user_id, server_name_of
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.errors import MatrixError
from homeserver.services.aliases import AliasService
from homeserver.services.event_builder import NewEvent
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.membership import MembershipService
from homeserver.services.profiles import ProfileService

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
POWER_LEVELS: Final = "m.room.power_levels"
CANONICAL_ALIAS: Final = "m.room.canonical_alias"
JOIN_RULES: Final = "m.room.join_rules"
HISTORY_VISIBILITY: Final = "m.room.history_visibility"
GUEST_ACCESS: Final = "m.room.guest_access"
NAME: Final = "m.room.name"
TOPIC: Final = "m.room.topic"

PRIVATE_CHAT: Final = "private_chat"
TRUSTED_PRIVATE_CHAT: Final = "trusted_private_chat"
PUBLIC_CHAT: Final = "public_chat"

# create_room.yaml, the preset table: join_rules, history_visibility, guest_access.
PRESET_STATE: Final[Mapping[str, tuple[str, str, str]]] = {
    PRIVATE_CHAT: ("invite", "shared", "can_join"),
    TRUSTED_PRIVATE_CHAT: ("invite", "shared", "can_join"),
    PUBLIC_CHAT: ("public", "shared", "forbidden"),
}
# m.room.name: "MUST NOT exceed 255 bytes".
MAX_NAME_BYTES: Final = 255


@dataclass(frozen=True, slots=True)
class CreateRoomRequest:
    """The body of POST /createRoom, checked."""

    room_version: RoomVersion
    preset: str
    is_public: bool
    alias: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: Sequence[str] = ()
    is_direct: bool = False
    creation_content: Mapping[str, Any] = field(default_factory=dict)
    initial_state: Sequence[tuple[str, str, Mapping[str, Any]]] = ()
    power_level_content_override: Mapping[str, Any] | None = None


def _bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def _optional(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise _bad_json(f"'{key}' has the wrong type")
    return value


def parse_create_room_request(
    body: Mapping[str, Any], server_name: str, default_room_version: str
) -> CreateRoomRequest:
    """Check the body of POST /createRoom: M_BAD_JSON for wrong types, M_INVALID_PARAM for bad
    values, M_UNSUPPORTED_ROOM_VERSION for a version this server cannot create."""
    version_id = _optional(body, "room_version", str) or default_room_version
    if version_id not in KNOWN_ROOM_VERSIONS:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version_id!r} is not supported"
        )
    visibility = _optional(body, "visibility", str) or "private"
    if visibility not in ("public", "private"):
        raise MatrixError(400, "M_INVALID_PARAM", "visibility must be 'public' or 'private'")
    # create_room.yaml `preset`: unspecified → from the visibility.
    preset = _optional(body, "preset", str) or (
        PUBLIC_CHAT if visibility == "public" else PRIVATE_CHAT
    )
    if preset not in PRESET_STATE:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown preset {preset!r}")
    name = _optional(body, "name", str)
    if name is not None and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "The room name exceeds 255 bytes")
    override = _optional(body, "power_level_content_override", dict)
    return CreateRoomRequest(
        room_version=KNOWN_ROOM_VERSIONS[version_id],
        preset=preset,
        is_public=visibility == "public",
        alias=_alias(_optional(body, "room_alias_name", str), server_name),
        name=name,
        topic=_optional(body, "topic", str),
        invite=_invitees(body.get("invite")),
        is_direct=bool(_optional(body, "is_direct", bool)),
        creation_content=_creation_content(_optional(body, "creation_content", dict) or {}),
        initial_state=_initial_state(_optional(body, "initial_state", list) or []),
        power_level_content_override=override,
    )


def _alias(localpart: str | None, server_name: str) -> str | None:
    if localpart is None:
        return None
    alias = f"#{localpart}:{server_name}"
    if not localpart or any(c in localpart for c in ": \t\n") or not is_valid_room_alias(alias):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room_alias_name {localpart!r}")
    return alias


def _invitees(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise _bad_json("'invite' must be a list of user IDs")
    for user_id in value:
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user ID {user_id!r} in 'invite'")
    return list(dict.fromkeys(value))


def _creation_content(content: dict[str, Any]) -> dict[str, Any]:
    if "m.federate" in content and not isinstance(content["m.federate"], bool):
        raise _bad_json("'m.federate' must be a boolean")
    if "type" in content and not isinstance(content["type"], str):
        raise _bad_json("'type' in creation_content must be a string")
    additional = content.get("additional_creators")
    if additional is not None and (
        not isinstance(additional, list)
        or not all(isinstance(u, str) and is_valid_user_id(u, historical=True) for u in additional)
    ):
        raise MatrixError(400, "M_INVALID_PARAM", "additional_creators must list user IDs")
    return content


def _initial_state(items: list[Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    parsed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            raise _bad_json("initial_state entries must be objects")
        event_type, state_key, content = (
            item.get("type"),
            item.get("state_key", ""),
            item.get("content"),
        )
        if not isinstance(event_type, str) or not isinstance(state_key, str):
            raise _bad_json("initial_state entries need a string 'type' and 'state_key'")
        if not isinstance(content, dict):
            raise _bad_json("initial_state entries need an object 'content'")
        if event_type in (CREATE, MEMBER):
            raise MatrixError(400, "M_INVALID_PARAM", f"{event_type} cannot be initial_state")
        # A later entry for the same (type, state_key) replaces the earlier one.
        parsed.pop((event_type, state_key), None)
        parsed[(event_type, state_key)] = content
    return [(t, k, c) for (t, k), c in parsed.items()]


def default_power_levels(
    request: CreateRoomRequest, creator: str, invitees: Sequence[str]
) -> dict[str, Any]:
    """The power levels a new room starts with (create_room.yaml, step 3)."""
    version = request.room_version
    users: dict[str, int] = {}
    # v1–v11: the creator gets 100. v12: creators have infinite power and must not be listed.
    if not version.privileged_room_creators:
        users[creator] = 100
        if request.preset == TRUSTED_PRIVATE_CHAT:
            users.update({user_id: 100 for user_id in invitees})
    return {
        "users": users,
        "users_default": 0,
        "events": {
            NAME: 50,
            POWER_LEVELS: 100,
            HISTORY_VISIBILITY: 100,
            CANONICAL_ALIAS: 50,
            "m.room.avatar": 50,
            # v12: tombstoning MUST need more than state_default (create_room.yaml, step 3).
            "m.room.tombstone": 150 if version.privileged_room_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        # Private rooms: every member may invite; public ones: moderators.
        "invite": 50 if request.preset == PUBLIC_CHAT else 0,
        "notifications": {"room": 50},
    }


def creation_events(
    request: CreateRoomRequest,
    creator: str,
    local_invitees: Sequence[str],
    profiles: Mapping[str, Mapping[str, str]],
) -> list[NewEvent]:
    """The room's initial events in the order of create_room.yaml (steps 1–8)."""
    create_content = _create_content(request, creator)
    initial_state: dict[tuple[str, str], Mapping[str, Any]] = {
        (t, k): c for t, k, c in request.initial_state
    }
    power_levels = _power_levels(
        request, creator, create_content, initial_state.pop((POWER_LEVELS, ""), None)
    )

    def state_event(event_type: str, content: Mapping[str, Any], key: str = "") -> NewEvent:
        return NewEvent(event_type, creator, content, key)

    events = [  # steps 1–3
        state_event(CREATE, create_content),
        state_event(MEMBER, {"membership": "join", **profiles.get(creator, {})}, creator),
        state_event(POWER_LEVELS, power_levels),
    ]
    if request.alias is not None:  # step 4
        events.append(state_event(CANONICAL_ALIAS, {"alias": request.alias}))
    join_rule, visibility, guest_access = PRESET_STATE[request.preset]
    preset_state = {
        JOIN_RULES: {"join_rule": join_rule},
        HISTORY_VISIBILITY: {"history_visibility": visibility},
        GUEST_ACCESS: {"guest_access": guest_access},
    }
    # Step 5; initial_state takes precedence over the preset.
    for event_type, preset_content in preset_state.items():
        events.append(state_event(event_type, initial_state.pop((event_type, ""), preset_content)))
    # Step 6; `name` and `topic` take precedence over initial_state.
    if request.name is not None:
        initial_state.pop((NAME, ""), None)
    if request.topic is not None:
        initial_state.pop((TOPIC, ""), None)
    events.extend(state_event(t, c, k) for (t, k), c in initial_state.items())
    if request.name is not None:  # step 7
        events.append(state_event(NAME, {"name": request.name}))
    if request.topic is not None:
        events.append(state_event(TOPIC, topic_content(request.topic)))
    for invitee in local_invitees:  # step 8
        invite: dict[str, Any] = {"membership": "invite", **profiles.get(invitee, {})}
        if request.is_direct:
            invite["is_direct"] = True
        events.append(state_event(MEMBER, invite, invitee))
    return events


def _create_content(request: CreateRoomRequest, creator: str) -> dict[str, Any]:
    """`creation_content` with the keys the server owns: `room_version`, `creator` (before
    v11 only), and in v12 `additional_creators` merged with trusted_private_chat invitees."""
    version = request.room_version
    content = dict(request.creation_content)
    content["room_version"] = version.identifier
    content.pop("creator", None)
    if not version.implicit_room_creator:
        content["creator"] = creator
    if not version.privileged_room_creators:
        content.pop("additional_creators", None)
        return content
    extra = list(content.get("additional_creators") or [])
    if request.preset == TRUSTED_PRIVATE_CHAT:
        extra.extend(request.invite)  # "combine …, deduplicating between the two"
    extra = [u for u in dict.fromkeys(extra) if u != creator]
    if extra:
        content["additional_creators"] = extra
    else:
        content.pop("additional_creators", None)
    return content


def _power_levels(
    request: CreateRoomRequest,
    creator: str,
    create_content: Mapping[str, Any],
    from_initial_state: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Step 3: the defaults (or an initial_state power levels event), then the override. In
    v12 no room creator may be listed in `users`."""
    if from_initial_state is not None:
        levels = dict(from_initial_state)
    else:
        levels = default_power_levels(request, creator, request.invite)
    levels.update(request.power_level_content_override or {})
    users = levels.get("users")
    if request.room_version.privileged_room_creators and isinstance(users, dict):
        creators = {creator, *create_content.get("additional_creators", [])}
        levels["users"] = {u: level for u, level in users.items() if u not in creators}
    return levels


def topic_content(topic: str) -> dict[str, Any]:
    """m.room.topic content: `topic` plus its `text/plain` `m.topic` block (v1.15)."""
    return {"topic": topic, "m.topic": {"m.text": [{"body": topic, "mimetype": "text/plain"}]}}


class RoomCreationService:
    def __init__(
        self,
        *,
        pipeline: EventPipeline,
        aliases: AliasService,
        profiles: ProfileService,
        membership: MembershipService,
        server_name: str,
        default_room_version: str,
    ) -> None:
        self._pipeline = pipeline
        self._aliases = aliases
        self._profiles = profiles
        self._membership = membership
        self._server_name = server_name
        self._default_room_version = default_room_version

    async def create_room(self, creator: str, body: Mapping[str, Any]) -> str:
        """POST /createRoom; returns the new room's ID."""
        request = parse_create_room_request(body, self._server_name, self._default_room_version)
        invitees = [u for u in request.invite if u != creator]
        local = [u for u in invitees if server_name_of(u) == self._server_name]
        remote = [u for u in invitees if server_name_of(u) != self._server_name]
        if remote and not self._membership.can_invite_remote_users:
            raise MatrixError(
                403, "M_FORBIDDEN", "Users of other servers cannot be invited: no federation"
            )
        if request.alias is not None and await self._aliases.alias_exists(request.alias):
            raise MatrixError(400, "M_ROOM_IN_USE", f"Room alias {request.alias} already exists")
        for user_id in local:
            await self._membership.check_local_user_exists(user_id)
        profiles = {u: await self._profiles.member_profile(u) for u in [creator, *local]}
        events = creation_events(request, creator, local, profiles)
        try:
            created = await self._pipeline.create_room_events(
                request.room_version, events, is_public=request.is_public
            )
        except MatrixError as e:
            if e.errcode != "M_FORBIDDEN":
                raise
            # create_room.yaml: initial state that fails the auth rules is M_INVALID_ROOM_STATE.
            raise MatrixError(400, "M_INVALID_ROOM_STATE", e.error) from None
        room_id: str = created[0].room_id
        if request.alias is not None:
            try:
                await self._aliases.create_alias_unchecked(creator, request.alias, room_id)
            except MatrixError:
                # Taken between the check and now: the room exists, its canonical alias
                # names a room it does not resolve to; say so rather than hide the room.
                raise MatrixError(
                    400, "M_ROOM_IN_USE", f"Room alias {request.alias} already exists"
                ) from None
        for user_id in remote:
            await self._membership.invite(
                creator, room_id, user_id, reason=None, is_direct=request.is_direct
            )
        return room_id
