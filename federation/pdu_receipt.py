"""Receipt checks 1–3 of a PDU with every hash computed once.

Spec: S2S "Checks performed on receipt of a PDU" (1. a valid event, else dropped; 2. valid
signatures, else dropped; 3. a matching content hash, else the event is redacted before further
processing) and "Validating hashes and signatures on received events".

A server joining a big room receives thousands of events at once (S2S "Joining Rooms": the
`state` and `auth_chain` of `/send_join`). The redacted event's canonical JSON is both what
every signature covers and what the v3+ event ID hashes, so `parse_received_pdu` encodes it
once; the signatures are then checked against those bytes (`verify_signature`), possibly on
other threads, by the caller that holds the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.canonical_json import CanonicalJsonError
from federation.hashing import (
    check_content_hash,
    event_id_from_signing_bytes,
    redacted_signing_bytes,
)
from federation.pdu import Event, InvalidPdu, validate_pdu
from federation.redaction import redact
from federation.room_versions import EventIdFormat, RoomVersion
from federation.signing import ED25519, SignatureError, servers_required_to_sign


@dataclass(frozen=True, slots=True)
class ReceivedPdu:
    """A PDU that passed step 1, with what steps 2 and 3 need."""

    event: Event
    # Canonical JSON of the redacted event without signatures and unsigned: what each of its
    # signatures covers (S2S "Signing Events").
    signing_bytes: bytes
    content_hash_matches: bool

    def event_to_store(self) -> Event:
        """Step 3: the event as received, or its redacted form (same event ID) when the content
        hash does not match."""
        if self.content_hash_matches:
            return self.event
        redacted = redact(self.event.pdu, self.event.room_version)
        return Event.from_pdu(redacted, self.event.room_version, event_id=self.event.event_id)


def parse_received_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> ReceivedPdu:
    """Step 1 (`InvalidPdu`: drop it) and the hashes of steps 2–3, each computed once."""
    validate_pdu(pdu, room_version)
    try:
        signing_bytes = redacted_signing_bytes(pdu, room_version)
    except CanonicalJsonError as exc:
        raise InvalidPdu(str(exc)) from None
    if room_version.event_id_format is EventIdFormat.V1:
        event_id = str(pdu["event_id"])
    else:
        event_id = event_id_from_signing_bytes(signing_bytes, room_version)
    event = Event.from_validated_pdu(pdu, room_version, event_id)
    return ReceivedPdu(event, signing_bytes, check_content_hash(pdu))


def signatures_to_check(received: ReceivedPdu) -> dict[str, dict[str, object]]:
    """Step 2's work: for each server that must sign the event (its sender's; v1–v2 the event
    ID's; restricted joins the authorising server's), its ed25519 signatures, key ID → the
    signature as sent (unpadded base64 when well formed; `verify_signature` checks that).

    `SignatureError` when a server that must sign has no signatures at all. A server with only
    signatures of other algorithms maps to no keys: the event then fails step 2 too.
    """
    event = received.event
    required = servers_required_to_sign(event.pdu, event.room_version)
    signatures = event.pdu.get("signatures")
    found: dict[str, dict[str, object]] = {}
    for server in sorted(required):
        by_server = signatures.get(server) if isinstance(signatures, Mapping) else None
        if not isinstance(by_server, Mapping):
            raise SignatureError(f"event is not signed by {server}")
        found[server] = {
            key_id: signature
            for key_id, signature in by_server.items()
            if isinstance(key_id, str) and key_id.partition(":")[0] == ED25519
        }
    return found
