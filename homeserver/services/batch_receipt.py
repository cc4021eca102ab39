"""Receipt checks 1–3 for many PDUs at once (the `state` and `auth_chain` of `/send_join`).

S2S "Checks performed on receipt of a PDU", steps 1–3, with the same outcome per event as
`check_pdu` (homeserver/services/federation_checks.py): not a valid event → dropped; a signature
of a server that must sign missing, or one by a key we know not verifying → dropped; a content
hash mismatch → the redacted event is kept. What makes the batch cheap:
- a PDU sent twice (an event in both the state and the auth chain) is checked once;
- each PDU is validated, redacted and canonically encoded once (federation/pdu_receipt.py);
- each (server, key ID) is looked up in the keyring once, not once per event (key validity of
  room versions 5+ is monotonic: a key valid until T serves every event sent before T);
- the ed25519 checks run on worker threads (libsodium releases the GIL) while the event loop
  thread parses the next chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from federation.pdu import Event, InvalidPdu
from federation.pdu_receipt import ReceivedPdu, parse_received_pdu, signatures_to_check
from federation.room_versions import RoomVersion
from federation.signing import SignatureError, verify_signature
from homeserver.remote.keyring import KeyUnavailableError
from homeserver.services.federation_checks import EventKeyring

logger = logging.getLogger(__name__)

# Events parsed per chunk: one chunk's signatures are checked on a worker thread while the
# next chunk is parsed; the event loop gets a turn between chunks.
CHUNK_SIZE: Final = 200


@dataclass(frozen=True, slots=True)
class _SignatureCheck:
    """One signature to verify: the event's index in its chunk, what the signature covers,
    whose it is, and the key to check it with."""

    index: int
    message: bytes
    server: str
    key_id: str
    signature: object
    verify_key: bytes


@dataclass(slots=True)
class CheckedPdus:
    """The outcome of steps 1–3 for a batch: the events to store, by ID (redacted where the
    content hash did not match), the event ID of each PDU given (None when it was dropped),
    and why the dropped ones were."""

    events: dict[str, Event] = field(default_factory=dict)
    event_ids: list[str | None] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class KeyLookup:
    """The keyring, asked once per (server, key ID) and needed validity.

    `get_verify_key(server, key_id, minimum)` finds a key valid until at least `minimum`; a key
    found for one minimum serves every smaller one, and none found for a minimum means none for
    a larger one, so each (server, key ID) usually costs one keyring call for the whole batch.
    """

    def __init__(self, keyring: EventKeyring) -> None:
        self._keyring = keyring
        self._found: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._missing: dict[tuple[str, str], int] = {}

    async def get(self, server: str, key_id: str, minimum: int) -> bytes | None:
        slot = (server, key_id)
        found = self._found.get(slot)
        if found is not None and minimum <= found[0]:
            return found[1]
        missing = self._missing.get(slot)
        if missing is not None and minimum >= missing:
            return None
        try:
            key = await self._keyring.get_verify_key(server, key_id, minimum)
        except KeyUnavailableError:
            self._missing[slot] = min(minimum, missing if missing is not None else minimum)
            return None
        if found is None or minimum > found[0]:
            self._found[slot] = (minimum, key)
        return key

    async def prefetch(self, wanted: Mapping[tuple[str, str], int]) -> None:
        """Look each (server, key ID) up for the largest validity any event needs."""
        for (server, key_id), minimum in wanted.items():
            await self.get(server, key_id, minimum)


def distinct_pdus(pdus: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[int]]:
    """The PDUs without exact repeats (same JSON values and types) in first-seen order, and for
    each PDU given the index of its copy among them.

    Repeats are found by their sorted-key JSON encoding, which tells `1`, `1.0` and `true`
    apart. (It writes NaN as `null`, but parsed JSON holds no NaN, and a PDU with one is never
    valid: the worst a sender can do with that is have its own events dropped.)"""
    first: dict[bytes | int, int] = {}
    unique: list[Mapping[str, Any]] = []
    positions: list[int] = []
    for pdu in pdus:
        try:
            key: bytes | int = orjson.dumps(pdu, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            key = id(pdu)  # not plain JSON (e.g. an integer over 64 bits): check it on its own
        position = first.get(key)
        if position is None:
            position = first[key] = len(unique)
            unique.append(pdu)
        positions.append(position)
    return unique, positions


async def check_received_pdus(
    pdus: Sequence[Mapping[str, Any]],
    room_version: RoomVersion,
    keyring: EventKeyring,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> CheckedPdus:
    """Steps 1–3 for every distinct PDU of `pdus` (which should all be of one room)."""
    unique, positions = distinct_pdus(pdus)
    keys = KeyLookup(keyring)
    loop = asyncio.get_running_loop()
    result = CheckedPdus()
    outcome: list[str | None] = [None] * len(unique)
    pending: list[tuple[int, list[ReceivedPdu | None], asyncio.Future[dict[int, str]]]] = []
    for start in range(0, len(unique), chunk_size):
        chunk: list[ReceivedPdu | None] = []
        for pdu in unique[start : start + chunk_size]:
            try:
                chunk.append(parse_received_pdu(pdu, room_version))
            except (InvalidPdu, ValueError) as exc:
                chunk.append(None)
                result.dropped.append(f"invalid event: {exc}")
        checks, failed = await _signature_checks(chunk, keys)
        verified = loop.run_in_executor(None, _verify_all, checks, failed)
        pending.append((start, chunk, verified))
        await asyncio.sleep(0)  # let other requests in between chunks
    for start, chunk, verified in pending:
        failures = await verified
        for index, received in enumerate(chunk):
            if received is None:
                continue
            reason = failures.get(index)
            if reason is not None:
                result.dropped.append(f"{received.event.event_id}: {reason}")
                continue
            event = received.event_to_store()
            result.events.setdefault(event.event_id, event)
            outcome[start + index] = event.event_id
    result.event_ids = [outcome[position] for position in positions]
    return result


async def _signature_checks(
    chunk: Sequence[ReceivedPdu | None], keys: KeyLookup
) -> tuple[list[_SignatureCheck], dict[int, str]]:
    """The signatures of a chunk to verify with the keys we can find, and the events already
    failing step 2 (a server that must sign did not, or by no key we can find)."""
    needed: list[tuple[int, int, dict[str, dict[str, object]]]] = []
    received_bytes: dict[int, bytes] = {}
    failed: dict[int, str] = {}
    wanted: dict[tuple[str, str], int] = {}
    for index, received in enumerate(chunk):
        if received is None:
            continue
        try:
            signatures = signatures_to_check(received)
        except SignatureError as exc:
            failed[index] = str(exc)
            continue
        # v5 "signing key validity": the key must be valid at origin_server_ts.
        event = received.event
        minimum = event.origin_server_ts if event.room_version.enforce_key_validity else 0
        needed.append((index, minimum, signatures))
        received_bytes[index] = received.signing_bytes
        for server, by_key in signatures.items():
            for key_id in by_key:
                wanted[(server, key_id)] = max(wanted.get((server, key_id), 0), minimum)
    await keys.prefetch(wanted)
    checks: list[_SignatureCheck] = []
    for index, minimum, signatures in needed:
        for server, by_key in signatures.items():
            found = False
            for key_id, signature in by_key.items():
                verify_key = await keys.get(server, key_id, minimum)
                if verify_key is not None:
                    message = received_bytes[index]
                    checks.append(
                        _SignatureCheck(index, message, server, key_id, signature, verify_key)
                    )
                    found = True
            if not found:
                failed[index] = f"no signature of {server} by a key we could find"
    return checks, failed


def _verify_all(checks: Sequence[_SignatureCheck], failed: dict[int, str]) -> dict[int, str]:
    """Run on a worker thread: verify each signature; an event with one bad signature fails."""
    for check in checks:
        if check.index in failed:
            continue
        try:
            verify_signature(
                check.message, check.signature, check.server, check.key_id, check.verify_key
            )
        except SignatureError as exc:
            failed[check.index] = f"bad signature: {exc}"
    return failed
