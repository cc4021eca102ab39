"""The first three receipt checks of a PDU: format, signatures, content hash.

S2S "Checks performed on receipt of a PDU", steps 1–3, and "Validating hashes and signatures on
received events": an event that is not valid for its room version, or whose signatures do not
verify, is dropped (`DroppedPdu`); one whose content hash does not match is kept in its
redacted form. The auth checks (steps 4–6) are homeserver/services/federation_inbound.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from federation.hashing import check_content_hash as content_hash_matches
from federation.pdu import Event, InvalidPdu
from federation.redaction import redact
from federation.room_versions import RoomVersion
from federation.signing import (
    ED25519,
    SignatureError,
    servers_required_to_sign,
    verify_event_signature,
)
from homeserver.remote.keyring import KeyUnavailableError


class DroppedPdu(Exception):
    """The PDU fails step 1 or 2: it is not stored, and the reason goes back to the sender."""


class EventKeyring(Protocol):
    """What signature checks need of the keyring (homeserver/remote/keyring.py)."""

    async def get_verify_key(
        self, server_name: str, key_id: str, minimum_valid_until_ts: int
    ) -> bytes: ...


def check_format(
    pdu: Mapping[str, Any], room_version: RoomVersion, event_id: str | None = None
) -> Event:
    """Step 1: a valid event of its room version (size, fields, IDs), else dropped.
    `event_id`: its ID if the caller already computed it (`compute_event_id`)."""
    try:
        return Event.from_pdu(pdu, room_version, event_id=event_id)
    except InvalidPdu as exc:
        raise DroppedPdu(f"invalid event: {exc}") from None
    except ValueError as exc:  # the event ID cannot be computed (v1–v2 without one)
        raise DroppedPdu(f"invalid event: {exc}") from None


async def check_signatures(event: Event, keyring: EventKeyring) -> None:
    """Step 2: each server that must sign (its sender's; v1–v2 the event ID's; restricted
    joins the authorising server's) has a valid signature by a key we can find, else dropped.

    Signatures by keys we cannot find, or that expired before the event (room versions with
    key validity), are skipped; one by a known key that does not verify drops the event.
    """
    room_version = event.room_version
    try:
        required = servers_required_to_sign(event.pdu, room_version)
    except SignatureError as exc:
        raise DroppedPdu(str(exc)) from None
    # v5 "signing key validity": the key must be valid at origin_server_ts.
    minimum = event.origin_server_ts if room_version.enforce_key_validity else 0
    signatures = event.pdu.get("signatures")
    for server in sorted(required):
        by_server = signatures.get(server) if isinstance(signatures, Mapping) else None
        if not isinstance(by_server, Mapping):
            raise DroppedPdu(f"event is not signed by {server}")
        verified = False
        for key_id in by_server:
            if not isinstance(key_id, str) or key_id.partition(":")[0] != ED25519:
                continue
            try:
                verify_key = await keyring.get_verify_key(server, key_id, minimum)
            except KeyUnavailableError:
                continue
            try:
                verify_event_signature(event.pdu, room_version, server, key_id, verify_key)
            except SignatureError as exc:
                raise DroppedPdu(f"bad signature: {exc}") from None
            verified = True
        if not verified:
            raise DroppedPdu(f"no signature of {server} by a key we could find")


def check_content_hash(event: Event) -> Event:
    """Step 3: on a content hash mismatch, keep only the redacted event (same event ID)."""
    if content_hash_matches(event.pdu):
        return event
    redacted = redact(event.pdu, event.room_version)
    return Event.from_pdu(redacted, event.room_version, event_id=event.event_id)


async def check_pdu(
    pdu: Mapping[str, Any],
    room_version: RoomVersion,
    keyring: EventKeyring,
    *,
    event_id: str | None = None,
) -> Event:
    """Steps 1–3 in order: the event as it will be stored (maybe redacted), or `DroppedPdu`.
    `event_id`: the PDU's ID if the caller already computed it (`compute_event_id`)."""
    event = check_format(pdu, room_version, event_id)
    await check_signatures(event, keyring)
    return check_content_hash(event)
