"""Room versions 1–12 as data.

Each version is a frozen description of the rules it uses; every version is derived from the
one before it with `dataclasses.replace`, so the differences read like the spec's changelog
(`content/rooms/v*.md`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class EventIdFormat(enum.Enum):
    """How event IDs are made (`rooms/fragments/v1-event-ids.md`, v3, `v4-event-ids.md`)."""

    V1 = "v1"  # `$localpart:server`, chosen by the origin; `event_id` is on the PDU
    V3 = "v3"  # `$` + unpadded standard base64 of the reference hash
    V4 = "v4"  # `$` + unpadded URL-safe base64 of the reference hash


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"  # room version 12


class RedactionRules(enum.Enum):
    """The redaction algorithm's rule sets (`rooms/fragments/v*-redactions.md`)."""

    V1 = "v1"
    V6 = "v6"  # m.room.aliases content no longer preserved
    V9 = "v9"  # m.room.member keeps join_authorised_via_users_server
    V11 = "v11"  # create keeps all content, PL keeps invite, redaction keeps redacts, …


class RoomVersionStability(enum.Enum):
    STABLE = "stable"
    UNSTABLE = "unstable"


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    stability: RoomVersionStability
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    redaction_rules: RedactionRules
    # v1–v2: auth rule for m.room.redaction (redact level or same domain as the target).
    # From v3 the check moves to "Handling redactions" at delivery time.
    redaction_auth_rule: bool
    # v5: a server's signing key must be valid (valid_until_ts) at origin_server_ts.
    enforce_key_validity: bool
    # v6: integers within ±(2^53-1), no floats, strict canonical JSON.
    strict_canonical_json: bool
    # v1–v5: special auth rule for m.room.aliases (state_key must be the sender's domain).
    special_case_aliases_auth: bool
    # v6: `notifications` power levels are checked when changing m.room.power_levels.
    limit_notifications_power_levels: bool
    # v7: the `knock` join rule and membership.
    knock_join_rule: bool
    # v8: the `restricted` join rule, join_authorised_via_users_server.
    restricted_join_rule: bool
    # v10: the `knock_restricted` join rule.
    knock_restricted_join_rule: bool
    # v10: power levels must be integers (no strings).
    integer_power_levels: bool
    # v11: m.room.create has no `creator`; the creator is the create event's `sender`.
    implicit_room_creator: bool
    # v11: `redacts` moves from the top level into `content` of m.room.redaction.
    redacts_in_content: bool
    # v12: room ID is `!` + reference hash of the create event; create event has no room_id,
    # and is never listed in auth_events.
    room_id_from_create_event: bool
    # v12: room creators (sender + additional_creators) have infinite power.
    privileged_room_creators: bool

    @property
    def has_event_id_field(self) -> bool:
        """v1–v2 PDUs carry `event_id` and reference events as `[id, hashes]` pairs."""
        return self.event_id_format is EventIdFormat.V1


_V1: Final = RoomVersion(
    identifier="1",
    stability=RoomVersionStability.STABLE,
    event_id_format=EventIdFormat.V1,
    state_res=StateResAlgorithm.V1,
    redaction_rules=RedactionRules.V1,
    redaction_auth_rule=True,
    enforce_key_validity=False,
    strict_canonical_json=False,
    special_case_aliases_auth=True,
    limit_notifications_power_levels=False,
    knock_join_rule=False,
    restricted_join_rule=False,
    knock_restricted_join_rule=False,
    integer_power_levels=False,
    implicit_room_creator=False,
    redacts_in_content=False,
    room_id_from_create_event=False,
    privileged_room_creators=False,
)
_V2: Final = dataclasses.replace(_V1, identifier="2", state_res=StateResAlgorithm.V2)
_V3: Final = dataclasses.replace(
    _V2, identifier="3", event_id_format=EventIdFormat.V3, redaction_auth_rule=False
)
_V4: Final = dataclasses.replace(_V3, identifier="4", event_id_format=EventIdFormat.V4)
_V5: Final = dataclasses.replace(_V4, identifier="5", enforce_key_validity=True)
_V6: Final = dataclasses.replace(
    _V5,
    identifier="6",
    redaction_rules=RedactionRules.V6,
    strict_canonical_json=True,
    special_case_aliases_auth=False,
    limit_notifications_power_levels=True,
)
_V7: Final = dataclasses.replace(_V6, identifier="7", knock_join_rule=True)
_V8: Final = dataclasses.replace(_V7, identifier="8", restricted_join_rule=True)
_V9: Final = dataclasses.replace(_V8, identifier="9", redaction_rules=RedactionRules.V9)
_V10: Final = dataclasses.replace(
    _V9, identifier="10", knock_restricted_join_rule=True, integer_power_levels=True
)
_V11: Final = dataclasses.replace(
    _V10,
    identifier="11",
    redaction_rules=RedactionRules.V11,
    implicit_room_creator=True,
    redacts_in_content=True,
)
_V12: Final = dataclasses.replace(
    _V11,
    identifier="12",
    state_res=StateResAlgorithm.V2_1,
    room_id_from_create_event=True,
    privileged_room_creators=True,
)

V1, V2, V3, V4, V5, V6 = _V1, _V2, _V3, _V4, _V5, _V6
V7, V8, V9, V10, V11, V12 = _V7, _V8, _V9, _V10, _V11, _V12

KNOWN_ROOM_VERSIONS: Final[Mapping[str, RoomVersion]] = {
    v.identifier: v for v in (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}

DEFAULT_ROOM_VERSION: Final = V11


class UnsupportedRoomVersion(ValueError):
    """The room version is not one this server knows (M_UNSUPPORTED_ROOM_VERSION)."""


def room_version(identifier: str) -> RoomVersion:
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except (KeyError, TypeError):
        raise UnsupportedRoomVersion(f"unknown room version {identifier!r}") from None
