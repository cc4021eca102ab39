"""Authorisation rules for m.room.power_levels events (rule 10 of `rooms/v12.md`; rule 9 of
`rooms/v10.md`/`v11.md` and `rooms/fragments/v8-auth-rules.md`, rule 10 of `v1-auth-rules.md`).

Versions differ in: integer-only values and their type checks (v10+), `notifications` being
checked (v6+), room creators that may not appear in `users` (v12). In v1–v9 a value may be a
string holding an integer (v1–v5 also a float); a value that is none of these is not a power
level, and the event is rejected — the spec's rules compare levels, which such values are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.auth_error import AuthError
from federation.ids import is_valid_user_id
from federation.pdu import Event
from federation.room_state import (
    NAMED_LEVEL_DEFAULTS,
    InvalidPowerLevel,
    PowerLevel,
    StateMap,
    get_power_levels_content,
    parse_power_level,
    parse_power_levels_content,
    room_creators,
    user_power_level,
)


def check_power_levels(event: Event, state: StateMap) -> None:
    """Rule 10: raise `AuthError` unless this change of power levels is allowed."""
    room_version = event.room_version
    content = event.content
    if room_version.integer_power_levels:
        _check_integer_types(content)  # 10.1, 10.2
    _check_users(event)  # 10.3
    try:
        new = parse_power_levels_content(content, room_version)
    except InvalidPowerLevel as e:
        raise AuthError(f"invalid m.room.power_levels content: {e}") from None
    if room_version.privileged_room_creators:  # 10.4
        listed_creators = room_creators(state) & new["users"].keys()
        if listed_creators:
            raise AuthError(f"room creators may not be listed in users: {sorted(listed_creators)}")
    current = get_power_levels_content(state)
    if current is None:  # 10.5
        return
    sender_level = user_power_level(state, event.sender)
    for name in NAMED_LEVEL_DEFAULTS:  # 10.6
        _check_alteration(name, current.get(name), new.get(name), sender_level)
    level_maps = ["events"]
    if room_version.limit_notifications_power_levels:  # v6+
        level_maps.append("notifications")
    for map_name in level_maps:  # 10.7, 10.8
        old_map: dict[str, int] = current[map_name]
        new_map: dict[str, int] = new[map_name]
        for key in old_map.keys() | new_map.keys():
            _check_alteration(f"{map_name}.{key}", old_map.get(key), new_map.get(key), sender_level)
    old_users: dict[str, int] = current["users"]
    new_users: dict[str, int] = new["users"]
    for user in old_users.keys() | new_users.keys():  # 10.9, 10.10
        old, new_level = old_users.get(user), new_users.get(user)
        if old == new_level:
            continue
        if old is not None and user != event.sender and old >= sender_level:
            raise AuthError(
                f"{event.sender} (power level {sender_level}) may not change the power level"
                f" of {user} ({old})"
            )
        if new_level is not None and new_level > sender_level:
            raise AuthError(
                f"{event.sender} (power level {sender_level}) may not give {user} power"
                f" level {new_level}"
            )


def _check_alteration(
    name: str, old: int | None, new: int | None, sender_level: PowerLevel
) -> None:
    """10.6–10.8: an added, changed or removed level may be neither above the sender's level
    before nor after the change."""
    if old == new:
        return
    if old is not None and old > sender_level:
        raise AuthError(f"{name} is {old}, above the sender's power level {sender_level}")
    if new is not None and new > sender_level:
        raise AuthError(f"{name} {new} would be above the sender's power level {sender_level}")


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_integer_types(content: Mapping[str, Any]) -> None:
    """10.1–10.2 (v10+): levels are integers, never strings."""
    for name in NAMED_LEVEL_DEFAULTS:
        if name in content and not _is_integer(content[name]):
            raise AuthError(f"power level {name} must be an integer")
    for name in ("events", "notifications"):
        if name in content:
            levels = content[name]
            if not isinstance(levels, Mapping) or not all(_is_integer(v) for v in levels.values()):
                raise AuthError(f"{name} must be an object of integer power levels")


def _check_users(event: Event) -> None:
    """10.3: `users` maps valid user IDs to levels (integers; v1–v9 also integer strings)."""
    users = event.content.get("users", {})
    if not isinstance(users, Mapping):
        raise AuthError("users must be an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id, historical=True):
            raise AuthError(f"{user_id!r} in users is not a valid user ID")
        try:
            parse_power_level(level, event.room_version)
        except InvalidPowerLevel:
            raise AuthError(f"the power level of {user_id} is not valid: {level!r}") from None
