"""Room upgrades: POST /rooms/{roomId}/upgrade (C-S "Room Upgrades", room_upgrades.yaml).

The spec's "Server behaviour" steps, in order:

1. the user must be allowed to send `m.room.tombstone` in the old room;
2. a replacement room is created whose `m.room.create` has a `predecessor` (and the old room's
   `type` and `m.federate`); in v12 the upgrader plus the requested `additional_creators` are
   its creators (old additional creators are *not* carried over);
3. transferable state is copied (the spec's list, the canonical alias, space children and
   bans), the upgrader's power being raised for the copy when needed and restored after;
4. local aliases move to the new room (and so does publication in the room directory);
5. the old room gets its `m.room.tombstone`;
6. the old room's power levels are raised so that ordinary members can no longer talk or invite.

Before v12 the new room ID is chosen first, so the tombstone is sent before the room is created
and the `predecessor` can name it (SyTest and Synapse expect `predecessor.event_id`). In v12 the
room ID is the hash of the create event, so the tombstone follows and `event_id` is omitted, as
room_upgrades.md allows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_room_id, is_valid_user_id
from federation.pdu import Event
from federation.room_state import (
    InvalidPowerLevel,
    StateMap,
    membership_of,
    parse_power_level,
    required_power_level,
    room_creators,
    user_power_level,
)
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.errors import MatrixError
from homeserver.services.event_builder import NewEvent, new_room_id
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.profiles import ProfileService
from homeserver.services.state import RoomStateCache
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.rooms import RoomsStore

logger = logging.getLogger(__name__)

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
POWER_LEVELS: Final = "m.room.power_levels"
TOMBSTONE: Final = "m.room.tombstone"
CANONICAL_ALIAS: Final = "m.room.canonical_alias"
JOIN_RULES: Final = "m.room.join_rules"
SPACE_CHILD: Final = "m.space.child"

# room_upgrades.md, step 3: the recommended state events to transfer (power levels apart).
TRANSFERABLE_STATE: Final = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    JOIN_RULES,
)
# Named levels and level maps of m.room.power_levels (C-S "m.room.power_levels").
_NAMED_LEVELS: Final = (
    "ban",
    "events_default",
    "invite",
    "kick",
    "redact",
    "state_default",
    "users_default",
)
_LEVEL_MAPS: Final = ("events", "notifications", "users")
# Step 6: "setting events_default and invite to the greater of 50 and users_default + 1".
RESTRICTED_LEVEL: Final = 50
TOMBSTONE_BODY: Final = "This room has been replaced"


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """The body of POST /rooms/{roomId}/upgrade, checked."""

    new_version: RoomVersion
    additional_creators: Sequence[str] = ()


def parse_upgrade_request(body: Mapping[str, Any]) -> UpgradeRequest:
    """`new_version` is required (400 M_UNSUPPORTED_ROOM_VERSION if unknown here);
    `additional_creators` must list user IDs (v1.16)."""
    version_id = body.get("new_version")
    if version_id is None:
        raise MatrixError(400, "M_MISSING_PARAM", "'new_version' is required")
    if not isinstance(version_id, str):
        raise MatrixError(400, "M_BAD_JSON", "'new_version' must be a string")
    version = KNOWN_ROOM_VERSIONS.get(version_id)
    if version is None:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version_id!r} is not supported"
        )
    extra = body.get("additional_creators")
    if extra is None:
        extra = []
    if not isinstance(extra, list) or not all(
        isinstance(u, str) and is_valid_user_id(u, historical=True) for u in extra
    ):
        raise MatrixError(400, "M_INVALID_PARAM", "'additional_creators' must list user IDs")
    return UpgradeRequest(version, tuple(dict.fromkeys(extra)))


def new_creators(request: UpgradeRequest, upgrader: str) -> list[str]:
    """v12+: the additional creators of the new room (the upgrader is its sender). Ignored by
    versions without privileged creators (room_upgrades.yaml `additional_creators`)."""
    if not request.new_version.privileged_room_creators:
        return []
    return [u for u in request.additional_creators if u != upgrader]


def replacement_create_content(
    old_create: Mapping[str, Any],
    request: UpgradeRequest,
    upgrader: str,
    predecessor: Mapping[str, str],
) -> dict[str, Any]:
    """Step 2: `room_version`, `predecessor`, and the old room's `type` (v1.4) and
    `m.federate` (a room that did not federate stays so)."""
    content: dict[str, Any] = {
        "room_version": request.new_version.identifier,
        "predecessor": dict(predecessor),
    }
    for key in ("type", "m.federate"):
        if key in old_create:
            content[key] = old_create[key]
    extra = new_creators(request, upgrader)
    if extra:
        content["additional_creators"] = extra
    return content


def copied_power_levels(
    old_content: Mapping[str, Any],
    old_version: RoomVersion,
    new_version: RoomVersion,
    creators: Sequence[str],
) -> dict[str, Any]:
    """The old power levels for the new room: levels given as strings (v1–v9) become integers
    (v10+ requires them), and in v12 no room creator may be listed in `users`."""
    content = dict(old_content)
    for name in _NAMED_LEVELS:
        if name in content:
            level = _as_level(content[name], old_version)
            if level is None:
                del content[name]
            else:
                content[name] = level
    for name in _LEVEL_MAPS:
        raw = content.get(name)
        if not isinstance(raw, Mapping):
            content.pop(name, None)
            continue
        levels = {k: _as_level(v, old_version) for k, v in raw.items()}
        content[name] = {k: v for k, v in levels.items() if v is not None}
    if new_version.privileged_room_creators:
        content["users"] = {u: v for u, v in content.get("users", {}).items() if u not in creators}
    return content


def _as_level(value: object, room_version: RoomVersion) -> int | None:
    try:
        return parse_power_level(value, room_version)
    except InvalidPowerLevel:
        return None


def restricted_power_levels(content: Mapping[str, Any], old_version: RoomVersion) -> dict[str, Any]:
    """Step 6: `events_default` and `invite` at least max(50, users_default + 1)."""
    users_default = _as_level(content.get("users_default", 0), old_version) or 0
    restricted = max(RESTRICTED_LEVEL, users_default + 1)
    levels = dict(content)
    for name in ("events_default", "invite"):
        current = _as_level(content.get(name, 0), old_version) or 0
        levels[name] = max(current, restricted)
    return levels


def transferable_state(state: StateMap, new_version: RoomVersion) -> list[Event]:
    """Step 3: the state to replicate (no memberships: bans are sent separately). A join rule
    the new version does not know is left out rather than fail the room's creation."""
    wanted = [*TRANSFERABLE_STATE, CANONICAL_ALIAS]
    events = [state[(t, "")] for t in wanted if (t, "") in state]
    events.extend(e for (t, _), e in sorted(state.items()) if t == SPACE_CHILD)
    return [e for e in events if e.type != JOIN_RULES or _join_rule_ok(e, new_version)]


def _join_rule_ok(event: Event, version: RoomVersion) -> bool:
    rule = event.content.get("join_rule")
    needs = {
        "knock": version.knock_join_rule,
        "restricted": version.restricted_join_rule,
        "knock_restricted": version.knock_restricted_join_rule,
    }
    return needs.get(rule, True) if isinstance(rule, str) else False


def level_needed(levels: Mapping[str, Any], state_types: Sequence[str], with_bans: bool) -> int:
    """The power the upgrader needs to send the copied state (and bans) in the new room."""
    events = levels.get("events", {})
    state_default = levels.get("state_default", 50)
    needed = [events.get(t, state_default) for t in {*state_types, POWER_LEVELS}]
    if with_bans:
        needed.append(levels.get("ban", 50))
    return int(max(needed))


class RoomUpgradeService:
    def __init__(
        self,
        *,
        pipeline: EventPipeline,
        state: RoomStateCache,
        rooms: RoomsStore,
        aliases: AliasesStore,
        profiles: ProfileService,
        server_name: str,
    ) -> None:
        self._pipeline = pipeline
        self._state = state
        self._rooms = rooms
        self._aliases = aliases
        self._profiles = profiles
        self._server_name = server_name

    async def upgrade_room(self, upgrader: str, room_id: str, body: Mapping[str, Any]) -> str:
        """POST /rooms/{roomId}/upgrade; returns the replacement room's ID."""
        request = parse_upgrade_request(body)
        state = await self._state.get_current_state(room_id) if is_valid_room_id(room_id) else {}
        if not state or (CREATE, "") not in state:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        self._check_may_upgrade(state, upgrader)
        version = request.new_version
        predecessor = {"room_id": room_id}
        new_id: str | None = None
        if not version.room_id_from_create_event:
            new_id = new_room_id(self._server_name)
            tombstone = await self._send_tombstone(upgrader, room_id, new_id)
            predecessor["event_id"] = str(tombstone.event_id)
        new_id = await self._create_replacement(upgrader, state, request, predecessor, new_id)
        if version.room_id_from_create_event:
            await self._send_tombstone(upgrader, room_id, new_id)
        await self._move_aliases(upgrader, room_id, new_id, state)
        await self._move_publication(room_id, new_id)
        await self._restrict_old_room(upgrader, room_id, state)
        return new_id

    def _check_may_upgrade(self, state: StateMap, upgrader: str) -> None:
        """Step 1: a joined member with the power to send m.room.tombstone."""
        if membership_of(state, upgrader) != "join":
            raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
        if user_power_level(state, upgrader) < required_power_level(state, TOMBSTONE, True):
            raise MatrixError(403, "M_FORBIDDEN", "You do not have the power to upgrade this room")

    async def _send_tombstone(self, upgrader: str, room_id: str, new_id: str) -> Event:
        """Step 5: m.room.tombstone, `replacement_room` naming the new room."""
        content = {"body": TOMBSTONE_BODY, "replacement_room": new_id}
        return await self._pipeline.create_local_event(room_id, TOMBSTONE, upgrader, content, "")

    async def _create_replacement(
        self,
        upgrader: str,
        state: StateMap,
        request: UpgradeRequest,
        predecessor: Mapping[str, str],
        new_id: str | None,
    ) -> str:
        """Steps 2–3: the new room with the copied state, in one transaction; then the bans
        and the restored power levels."""
        version = request.new_version
        old_create = state[(CREATE, "")]
        creators = [upgrader, *new_creators(request, upgrader)]
        create_content = replacement_create_content(
            old_create.content, request, upgrader, predecessor
        )
        copied = transferable_state(state, version)
        bans = [
            e.state_key
            for (t, _), e in state.items()
            if t == MEMBER and e.content.get("membership") == "ban" and e.state_key
        ]
        profile = await self._profiles.member_profile(upgrader)
        events = [
            NewEvent(CREATE, upgrader, create_content, ""),
            NewEvent(MEMBER, upgrader, {"membership": "join", **profile}, upgrader),
        ]
        final_levels: dict[str, Any] | None = None
        old_levels = state.get((POWER_LEVELS, ""))
        if old_levels is not None:
            final_levels = copied_power_levels(
                old_levels.content, old_create.room_version, version, creators
            )
            if (
                not version.privileged_room_creators
                and upgrader in room_creators(state)
                and (old_create.room_version.privileged_room_creators)
            ):
                # A v12 creator had unlimited power there; keep them in charge here.
                final_levels.setdefault("users", {})[upgrader] = 100
            initial = self._raised_for_copy(final_levels, upgrader, copied, bool(bans), version)
            events.append(NewEvent(POWER_LEVELS, upgrader, initial, ""))
            if initial == final_levels:
                final_levels = None
        events.extend(NewEvent(e.type, upgrader, dict(e.content), e.state_key) for e in copied)
        try:
            # Unpublished at first: publication moves with the aliases (`_move_publication`).
            created = await self._pipeline.create_room_events(version, events, room_id=new_id)
        except MatrixError as e:
            if e.errcode != "M_FORBIDDEN":
                raise
            raise MatrixError(
                400, "M_INVALID_ROOM_STATE", f"Cannot copy the room: {e.error}"
            ) from e
        replacement: str = created[0].room_id
        for banned in bans:
            await self._best_effort(replacement, MEMBER, upgrader, {"membership": "ban"}, banned)
        if final_levels is not None:
            await self._pipeline.create_local_event(
                replacement, POWER_LEVELS, upgrader, final_levels, ""
            )
        return replacement

    @staticmethod
    def _raised_for_copy(
        levels: dict[str, Any],
        upgrader: str,
        copied: Sequence[Event],
        with_bans: bool,
        version: RoomVersion,
    ) -> dict[str, Any]:
        """The power levels the room starts with: the copied ones, the upgrader raised to the
        level the copy needs if below it (creators of v12 rooms need no raise)."""
        if version.privileged_room_creators:
            return levels
        needed = level_needed(levels, [e.type for e in copied], with_bans)
        users = levels.get("users", {})
        own = users.get(upgrader, levels.get("users_default", 0))
        if own >= needed:
            return levels
        return {**levels, "users": {**users, upgrader: needed}}

    async def _move_aliases(self, upgrader: str, old_id: str, new_id: str, state: StateMap) -> None:
        """Step 4: every local alias now points to the new room; the old room's canonical
        alias (copied to the new room) is cleared."""
        for alias in await self._aliases.get_aliases_for_room(old_id):
            mapping = await self._aliases.get_alias(alias)
            if mapping is None or mapping.room_id != old_id:
                continue
            if await self._aliases.delete_alias(alias):
                await self._aliases.create_alias(alias, new_id, mapping.creator, _now_ms())
        canonical = state.get((CANONICAL_ALIAS, ""))
        if canonical is not None and canonical.content:
            await self._best_effort(old_id, CANONICAL_ALIAS, upgrader, {}, "")

    async def _move_publication(self, old_id: str, new_id: str) -> None:
        """A room published in the directory is replaced there by its successor."""
        if await self._rooms.is_room_public(old_id):
            await self._rooms.set_room_is_public(new_id, True)
            await self._rooms.set_room_is_public(old_id, False)

    async def _restrict_old_room(self, upgrader: str, room_id: str, state: StateMap) -> None:
        """Step 6, "if possible": an upgrader who may not change power levels leaves them."""
        event = state.get((POWER_LEVELS, ""))
        if event is None:
            return
        content = restricted_power_levels(event.content, event.room_version)
        if content != dict(event.content):
            await self._best_effort(room_id, POWER_LEVELS, upgrader, content, "")

    async def _best_effort(
        self, room_id: str, event_type: str, sender: str, content: Mapping[str, Any], key: str
    ) -> None:
        try:
            await self._pipeline.create_local_event(room_id, event_type, sender, content, key)
        except MatrixError as e:
            logger.info("room upgrade: %s in %s not sent: %s", event_type, room_id, e)


def _now_ms() -> int:
    return int(time.time() * 1000)
