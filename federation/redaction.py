"""The redaction algorithm for every room version.

Spec: C-S "Redactions" and `rooms/fragments/v1-redactions.md`, `v6-redactions.md`,
`v9-redactions.md`, `v11-redactions.md`. The rule set a room version uses is
`RoomVersion.redaction_rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from federation.room_versions import RedactionRules, RoomVersion

# Top-level keys kept by the v1, v6 and v9 rules.
_KEPT_KEYS_V1: Final = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 no longer keeps `origin`, `membership` and `prev_state`.
_KEPT_KEYS_V11: Final = _KEPT_KEYS_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS: Final = frozenset(
    {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
)

# Content keys kept per event type (v1-redactions.md).
_CONTENT_KEYS_V1: Final[Mapping[str, frozenset[str]]] = {
    "m.room.member": frozenset({"membership"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule"}),
    "m.room.power_levels": _POWER_LEVELS_KEYS,
    "m.room.aliases": frozenset({"aliases"}),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
# v6: m.room.aliases content is no longer kept.
_CONTENT_KEYS_V6: Final[Mapping[str, frozenset[str]]] = {
    k: v for k, v in _CONTENT_KEYS_V1.items() if k != "m.room.aliases"
}
# v9: member keeps join_authorised_via_users_server; join_rules keeps allow.
_CONTENT_KEYS_V9: Final[Mapping[str, frozenset[str]]] = {
    **_CONTENT_KEYS_V6,
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
}
# v11: create keeps everything (handled below), power levels keep invite, redaction keeps
# redacts; member additionally keeps third_party_invite.signed (handled below).
_CONTENT_KEYS_V11: Final[Mapping[str, frozenset[str]]] = {
    **_CONTENT_KEYS_V9,
    "m.room.power_levels": _POWER_LEVELS_KEYS | {"invite"},
    "m.room.redaction": frozenset({"redacts"}),
}

_CONTENT_KEYS: Final[Mapping[RedactionRules, Mapping[str, frozenset[str]]]] = {
    RedactionRules.V1: _CONTENT_KEYS_V1,
    RedactionRules.V6: _CONTENT_KEYS_V6,
    RedactionRules.V9: _CONTENT_KEYS_V9,
    RedactionRules.V11: _CONTENT_KEYS_V11,
}


def redact(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return a redacted deep copy of `pdu`; `pdu` itself is never changed.

    Redacting an already redacted event gives the same event (the algorithm is idempotent).
    """
    return _redact(pdu, room_version, _copy_json)


def redacted_view(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """The redacted form of `pdu` as a new top-level dict whose values are shared with `pdu`:
    for encoding (hashes, signatures) without the deep copy. Never mutate the result."""
    return _redact(pdu, room_version, _same)


def _redact(
    pdu: Mapping[str, Any], room_version: RoomVersion, copy: Callable[[Any], Any]
) -> dict[str, Any]:
    rules = room_version.redaction_rules
    kept_keys = _KEPT_KEYS_V11 if rules is RedactionRules.V11 else _KEPT_KEYS_V1
    redacted = {k: copy(v) for k, v in pdu.items() if k in kept_keys}
    content = pdu.get("content")
    redacted["content"] = _redact_content(
        pdu.get("type"), content if isinstance(content, Mapping) else {}, rules, copy
    )
    return redacted


def _redact_content(
    event_type: object,
    content: Mapping[str, Any],
    rules: RedactionRules,
    copy: Callable[[Any], Any],
) -> dict[str, Any]:
    if rules is RedactionRules.V11 and event_type == "m.room.create":
        return {k: copy(v) for k, v in content.items()}  # v11: create keeps all keys
    if not isinstance(event_type, str):
        return {}
    allowed = _CONTENT_KEYS[rules].get(event_type, frozenset())
    kept = {k: copy(v) for k, v in content.items() if k in allowed}
    if rules is RedactionRules.V11 and event_type == "m.room.member":
        # v11: "allows the `signed` key of the `third_party_invite` key".
        invite = content.get("third_party_invite")
        if isinstance(invite, Mapping) and "signed" in invite:
            kept["third_party_invite"] = {"signed": copy(invite["signed"])}
    return kept


def _same(value: Any) -> Any:
    return value


def _copy_json(value: Any) -> Any:
    """A deep copy of a JSON value; read-only mappings come back as plain dicts."""
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(v) for v in value]
    return value
