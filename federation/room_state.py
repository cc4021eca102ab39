"""Read-only helpers over a room state map `{(type, state_key): Event}`.

Power levels, membership, join rules, history visibility and room creators, each read the way the
spec defines its default when the event or the property is absent. Power-level values are parsed
per room version: integers always; strings in v1–v9 (`rooms/fragments/v1-stringy-power-levels.md`);
floats in v1–v5, whose JSON is not strict (`rooms/fragments/v1-floaty-power-levels.md`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from federation.pdu import Event
from federation.room_versions import RoomVersion

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, Event]

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
JOIN_RULES: Final = "m.room.join_rules"
POWER_LEVELS: Final = "m.room.power_levels"
THIRD_PARTY_INVITE: Final = "m.room.third_party_invite"
HISTORY_VISIBILITY: Final = "m.room.history_visibility"

# The integer-valued top-level properties of m.room.power_levels and their defaults
# (C-S `m.room.power_levels`; S2S "Definitions": invite 0, kick/ban/redact 50).
NAMED_LEVEL_DEFAULTS: Final[Mapping[str, int]] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}
# The object-valued properties mapping a name (event type, notification key, user) to a level.
LEVEL_MAPS: Final = ("events", "notifications", "users")

# C-S `m.room.power_levels`: with no power-levels event, the creator has 100, everyone else 0.
CREATOR_DEFAULT_LEVEL: Final = 100

# v12: room creators have infinitely high power. `math.inf` compares above every int, so the
# ordinary `>=` / `<` comparisons of the auth rules need no special case.
INFINITE_POWER: Final = math.inf

PowerLevel = int | float  # an int, or INFINITE_POWER for v12 room creators

# `rooms/fragments/v1-stringy-power-levels.md`: surrounding whitespace, one optional sign, base-10
# digits (leading zeroes allowed). ASCII only: `int()` alone would also take `1_000` or `١٠٠`.
_STRINGY_LEVEL: Final = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)


class InvalidPowerLevel(ValueError):
    """A power-level value is not a valid level in this room version."""


def parse_power_level(value: object, room_version: RoomVersion) -> int:
    """One power-level value as an int, per room version; raise `InvalidPowerLevel` otherwise."""
    if isinstance(value, bool):
        raise InvalidPowerLevel(f"{value!r} is not a power level")
    if isinstance(value, int):
        return value
    stringy = not room_version.integer_power_levels  # v1–v9
    if stringy and isinstance(value, str) and _STRINGY_LEVEL.fullmatch(value):
        return int(value)
    # v1–v5 floats: truncated at the decimal point; non-finite values are invalid.
    floaty = not room_version.strict_canonical_json
    if floaty and isinstance(value, float) and math.isfinite(value):
        return math.trunc(value)
    version = room_version.identifier
    raise InvalidPowerLevel(f"{value!r} is not a power level in room version {version}")


def parse_power_levels_content(
    content: Mapping[str, Any], room_version: RoomVersion
) -> dict[str, Any]:
    """Normalise m.room.power_levels content: every level parsed to an int.

    Returns the named levels that are present plus `events`, `notifications` and `users` as
    `dict[str, int]` (empty when absent). Raises `InvalidPowerLevel` for a value that is not a level
    in this room version, or for a level map that is not an object. Unrelated keys are dropped.
    """
    parsed: dict[str, Any] = {}
    for name in NAMED_LEVEL_DEFAULTS:
        if name in content:
            parsed[name] = parse_power_level(content[name], room_version)
    for name in LEVEL_MAPS:
        raw = content.get(name, {})
        if not isinstance(raw, Mapping):
            raise InvalidPowerLevel(f"{name!r} must be an object")
        parsed[name] = {key: parse_power_level(v, room_version) for key, v in raw.items()}
    return parsed


def get_create_event(state: StateMap) -> Event | None:
    return state.get((CREATE, ""))


def get_power_levels_event(state: StateMap) -> Event | None:
    return state.get((POWER_LEVELS, ""))


def get_power_levels_content(state: StateMap) -> dict[str, Any] | None:
    """The current power levels, parsed (see `parse_power_levels_content`); None without the event.

    An event already in state whose content does not parse (possible only if it got there
    without passing the auth rules) is read leniently: its unparseable values are ignored, so
    the defaults apply for them.
    """
    event = get_power_levels_event(state)
    if event is None:
        return None
    try:
        return parse_power_levels_content(event.content, event.room_version)
    except InvalidPowerLevel:
        return _parse_leniently(event.content, event.room_version)


def _parse_leniently(content: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for name in NAMED_LEVEL_DEFAULTS:
        level = _try_parse(content.get(name), room_version)
        if level is not None:
            parsed[name] = level
    for name in LEVEL_MAPS:
        raw = content.get(name)
        levels: dict[str, int] = {}
        if isinstance(raw, Mapping):
            for key, value in raw.items():
                level = _try_parse(value, room_version)
                if level is not None:
                    levels[key] = level
        parsed[name] = levels
    return parsed


def _try_parse(value: object, room_version: RoomVersion) -> int | None:
    try:
        return parse_power_level(value, room_version)
    except InvalidPowerLevel:
        return None


def room_creators(state: StateMap) -> frozenset[str]:
    """The room creators, per the create event in `state` (empty without one).

    v1–v10: `content.creator`; v11: the create event's `sender`; v12: the `sender` plus every
    valid entry of `content.additional_creators`.
    """
    create = get_create_event(state)
    if create is None:
        return frozenset()
    room_version = create.room_version
    if not room_version.implicit_room_creator:
        creator = create.content.get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    creators: set[str] = {create.sender}
    if room_version.privileged_room_creators:
        additional = create.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(user for user in additional if isinstance(user, str))
    return frozenset(creators)


def user_power_level(state: StateMap, user_id: str) -> PowerLevel:
    """The user's power level: `users[user_id]`, else `users_default`, else 0.

    Without a power-levels event the creator has 100. In v12 room creators always have
    `INFINITE_POWER` (`math.inf`), which compares above every integer level.
    """
    create = get_create_event(state)
    privileged = create is not None and create.room_version.privileged_room_creators
    if privileged and user_id in room_creators(state):
        return INFINITE_POWER
    event = get_power_levels_event(state)
    if event is None:
        return CREATOR_DEFAULT_LEVEL if user_id in room_creators(state) else 0
    level = _level_in(event, "users", user_id)
    return level if level is not None else named_power_level(state, "users_default")


def named_power_level(state: StateMap, name: str) -> int:
    """A named level (`invite`, `kick`, `ban`, `redact`, `*_default`) with its spec default."""
    event = get_power_levels_event(state)
    level = None if event is None else _try_parse(event.content.get(name), event.room_version)
    return level if level is not None else NAMED_LEVEL_DEFAULTS[name]


def required_power_level(state: StateMap, event_type: str, is_state: bool) -> int:
    """S2S "Definitions", *required power level*: `events[type]`, else state/events default."""
    event = get_power_levels_event(state)
    level = None if event is None else _level_in(event, "events", event_type)
    if level is not None:
        return level
    return named_power_level(state, "state_default" if is_state else "events_default")


def _level_in(power_levels: Event, map_name: str, key: str) -> int | None:
    """One entry of a level map, parsed; None when absent (or, leniently, unparseable).

    Reads only that entry: these lookups run for every auth check, over rooms with many users.
    """
    levels = power_levels.content.get(map_name)
    if not isinstance(levels, Mapping) or key not in levels:
        return None
    return _try_parse(levels[key], power_levels.room_version)


def membership_of(state: StateMap, user_id: str) -> str:
    """The user's current membership; "leave" when there is no (well-formed) member event."""
    event = state.get((MEMBER, user_id))
    if event is None:
        return "leave"
    membership = event.content.get("membership")
    return membership if isinstance(membership, str) else "leave"


def join_rule(state: StateMap) -> str:
    """The current join rule; "invite" when there is no m.room.join_rules event."""
    event = state.get((JOIN_RULES, ""))
    rule = None if event is None else event.content.get("join_rule")
    return rule if isinstance(rule, str) else "invite"


def history_visibility(state: StateMap) -> str:
    """The current history visibility; "shared" when unset (C-S "Room History Visibility")."""
    event = state.get((HISTORY_VISIBILITY, ""))
    visibility = None if event is None else event.content.get("history_visibility")
    return visibility if isinstance(visibility, str) else "shared"
