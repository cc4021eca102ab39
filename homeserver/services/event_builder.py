"""Building a local event: the PDU fields, hashes and signature, then the auth check.

Spec: S2S "PDUs" (fields per room version), "Auth events selection", "Signing Events";
C-S "Size limits". Used by homeserver/services/event_pipeline.py; nothing here does I/O.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from federation.canonical_json import CanonicalJsonError, encode_canonical_json
from federation.hashing import compute_reference_hash, encode_base64
from federation.pdu import MAX_DEPTH, MAX_PDU_SIZE, MAX_PREV_EVENTS, Event, InvalidPdu
from federation.room_state import (
    CREATE,
    POWER_LEVELS,
    StateKey,
    named_power_level,
    user_power_level,
)
from federation.room_versions import RoomVersion
from federation.signing import SigningKey, add_hashes_and_signatures
from homeserver.errors import MatrixError

REDACTION: Final = "m.room.redaction"
_ID_CHARS: Final = string.ascii_letters


@dataclass(frozen=True, slots=True)
class NewEvent:
    """What a local user asks to send."""

    event_type: str
    sender: str
    content: Mapping[str, Any]
    state_key: str | None = None
    # Extra top-level PDU keys (e.g. `redacts` in rooms before v11); never override the
    # fields the pipeline sets.
    extra_pdu_fields: Mapping[str, Any] | None = None


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def new_room_id(server_name: str) -> str:
    """A room ID for v1–v11 rooms: `!opaque:server_name` (appendices "Room IDs")."""
    return f"!{random_string(18)}:{server_name}"


def choose_prev_events(extremities: Mapping[str, Event]) -> list[str]:
    """The forward extremities as prev_events, at most 20, deepest first (S2S "PDUs")."""
    ordered = sorted(extremities.values(), key=lambda e: (e.depth, e.event_id), reverse=True)
    return [e.event_id for e in ordered[:MAX_PREV_EVENTS]]


def auth_event_ids_for(
    room_version: RoomVersion, new: NewEvent, state_before: Mapping[StateKey, str]
) -> list[str]:
    """S2S "Auth events selection", from the state before the event."""
    keys = auth_types_for_event(
        room_version, new.event_type, new.sender, new.state_key, new.content
    )
    return [state_before[key] for key in keys if key in state_before]


def build_pdu(
    *,
    room_version: RoomVersion,
    room_id: str | None,
    new: NewEvent,
    prev_events: Sequence[Event],
    auth_events: Sequence[Event],
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """The signed PDU for `new`, in the format of `room_version`."""
    content = dict(new.content)
    extra = dict(new.extra_pdu_fields or {})
    if new.event_type == CREATE:
        # `room_version` defaults to "1" when absent; before v11 the creator is in content.
        content.setdefault("room_version", room_version.identifier)
        if not room_version.implicit_room_creator:
            content.setdefault("creator", new.sender)
    if new.event_type == REDACTION:
        _place_redacts(room_version, content, extra)
    depth = min(max((e.depth for e in prev_events), default=0) + 1, MAX_DEPTH)
    pdu: dict[str, Any] = {
        **extra,
        "type": new.event_type,
        "sender": new.sender,
        "content": content,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": _references(prev_events, room_version),
        "auth_events": _references(auth_events, room_version),
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if new.state_key is not None:
        pdu["state_key"] = new.state_key
    if room_version.has_event_id_field:
        # v1–v2: the origin chooses the ID (rooms/fragments/v1-event-ids.md).
        pdu["event_id"] = f"${random_string(24)}:{server_name}"
    return add_hashes_and_signatures(pdu, room_version, server_name, signing_key)


def _place_redacts(
    room_version: RoomVersion, content: dict[str, Any], extra: dict[str, Any]
) -> None:
    """`redacts` is top-level before v11 and in `content` from v11 (rooms/v11.md)."""
    redacts = extra.pop("redacts", None) or content.get("redacts")
    if redacts is None:
        return
    if room_version.redacts_in_content:
        content["redacts"] = redacts
    else:
        extra["redacts"] = redacts


def _references(events: Sequence[Event], room_version: RoomVersion) -> list[Any]:
    if room_version.has_event_id_field:
        # v1–v2: `[event_id, {"sha256": reference hash}]` pairs.
        return [
            [e.event_id, {"sha256": encode_base64(compute_reference_hash(e.pdu, room_version))}]
            for e in events
        ]
    return [e.event_id for e in events]


def parse_built_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> Event:
    """`Event.from_pdu` with its failures as client errors (C-S "Size limits")."""
    try:
        return Event.from_pdu(pdu, room_version)
    except InvalidPdu as e:
        if _size(pdu) > MAX_PDU_SIZE:
            raise MatrixError(413, "M_TOO_LARGE", "event too large") from None
        raise MatrixError(400, "M_BAD_JSON", f"invalid event: {e}") from None


def _size(pdu: Mapping[str, Any]) -> int:
    try:
        return len(encode_canonical_json(pdu))
    except CanonicalJsonError:
        return 0


def check_local_event(event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    """The authorisation rules against the state before the event; 403 with the reason."""
    try:
        check_auth_rules(event, auth_state)
    except AuthError as e:
        raise MatrixError(403, "M_FORBIDDEN", e.reason) from None


def redaction_applies(
    redaction: Event, target: Event, state_before: Mapping[StateKey, Event]
) -> bool:
    """Whether `redaction` redacts `target` (rooms/v3.md "Handling redactions"): same room, and
    the same server as the target's sender or the power to redact; v1–v2 auth checked it."""
    if target.room_id != redaction.room_id:
        return False
    if redaction.room_version.redaction_auth_rule:
        return True
    if target.sender_domain == redaction.sender_domain:
        return True
    if (POWER_LEVELS, "") not in state_before and (CREATE, "") not in state_before:
        return False
    return user_power_level(state_before, redaction.sender) >= named_power_level(
        state_before, "redact"
    )


__all__ = [
    "AuthError",
    "NewEvent",
    "auth_event_ids_for",
    "build_pdu",
    "check_local_event",
    "choose_prev_events",
    "new_room_id",
    "parse_built_pdu",
    "redaction_applies",
]
