"""Content hashes, reference hashes, event IDs and the v12 room ID; unpadded base64.

Spec: S2S "Calculating the content hash for an event", "Calculating the reference hash for an
event"; event ID formats in `rooms/fragments/v1-event-ids.md`, `rooms/v3.md`,
`v4-event-ids.md`; v12 room IDs in appendices "Room IDs"; appendices "Unpadded Base64".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from federation.canonical_json import encode_canonical_json
from federation.redaction import redacted_view
from federation.room_versions import EventIdFormat, RoomVersion


def encode_base64(b: bytes, urlsafe: bool = False) -> str:
    """Unpadded base64 (appendices "Unpadded Base64"); `urlsafe` uses `-` and `_`."""
    encoded = base64.urlsafe_b64encode(b) if urlsafe else base64.b64encode(b)
    return encoded.rstrip(b"=").decode("ascii")


def decode_base64(s: str) -> bytes:
    """Decode base64 with or without padding, in the standard or the URL-safe alphabet.

    Raises `ValueError` on anything else ("implementations SHOULD accept input with or
    without padding characters").
    """
    if not isinstance(s, str):
        raise ValueError("base64 value must be a string")
    body = s.rstrip("=")
    if len(s) - len(body) > 2 or len(body) % 4 == 1:
        raise ValueError(f"invalid base64 length in {s!r}")
    body = body.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"invalid base64 {s!r}") from None


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """sha256 of the canonical event without `unsigned`, `signatures` and `hashes`."""
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `pdu` with `hashes.sha256` set to its content hash (other hashes kept)."""
    result = dict(pdu)
    hashes = dict(pdu.get("hashes") or {})
    hashes["sha256"] = encode_base64(compute_content_hash(pdu))
    result["hashes"] = hashes
    return result


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether `hashes.sha256` matches the event; False if it is missing or malformed.

    When this fails for a received event, the server keeps the redacted copy
    (S2S "Validating hashes and signatures on received events").
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping) or not isinstance(hashes.get("sha256"), str):
        return False
    try:
        expected = decode_base64(hashes["sha256"])
    except ValueError:
        return False
    return expected == compute_content_hash(pdu)


def redacted_signing_bytes(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """Canonical JSON of the redacted event without `signatures`, `unsigned` and `age_ts`.

    It is what the reference hash is taken over (S2S "Calculating the reference hash for an
    event") and, as redaction keeps neither `unsigned` nor `age_ts`, exactly what every
    signature of the event covers (S2S "Signing Events"): one encoding serves both.
    """
    redacted = redacted_view(pdu, room_version)
    for key in ("signatures", "unsigned", "age_ts"):
        redacted.pop(key, None)
    return encode_canonical_json(redacted)


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """sha256 of the canonical redacted event without `signatures`, `unsigned` (and `age_ts`)."""
    return hashlib.sha256(redacted_signing_bytes(pdu, room_version)).digest()


def event_id_from_signing_bytes(signing_bytes: bytes, room_version: RoomVersion) -> str:
    """The v3+ event ID from `redacted_signing_bytes`: `$` + (URL-safe from v4) unpadded
    base64 of its sha256 (`rooms/v3.md`, `v4-event-ids.md`)."""
    if room_version.event_id_format is EventIdFormat.V1:
        raise ValueError(f"room version {room_version.identifier} events carry their event_id")
    urlsafe = room_version.event_id_format is EventIdFormat.V4
    return "$" + encode_base64(hashlib.sha256(signing_bytes).digest(), urlsafe=urlsafe)


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The event's ID in its room version's format.

    v1–v2: the `event_id` the origin put on the PDU. v3: `$` + unpadded base64 of the reference
    hash. v4+: `$` + URL-safe unpadded base64 of the reference hash.
    """
    if room_version.event_id_format is EventIdFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError(f"room version {room_version.identifier} events need an event_id")
        return event_id
    return event_id_from_signing_bytes(redacted_signing_bytes(pdu, room_version), room_version)


def room_id_for_create_event(create_pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """v12: the room ID is the create event's ID with `!` as the sigil (appendices "Room IDs")."""
    if not room_version.room_id_from_create_event:
        raise ValueError(
            f"room version {room_version.identifier} does not derive room IDs from create events"
        )
    if create_pdu.get("type") != "m.room.create":
        raise ValueError("the room ID is derived from the m.room.create event only")
    return "!" + encode_base64(compute_reference_hash(create_pdu, room_version), urlsafe=True)
