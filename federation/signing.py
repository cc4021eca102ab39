"""Signing keys, signed JSON and event signatures.

Spec: appendices "Signing JSON" ("Signing Details", "Checking for a Signature");
S2S "Signing Events" ("Adding hashes and signatures to outgoing events", "Validating hashes
and signatures on received events"); `rooms/fragments/v5-signing-requirements.md`.

Ed25519 (RFC 8032) is PyNaCl's (libsodium) for signing and verifying alike, so one library
is loaded at run time. The brief lists `cryptography` for ed25519; it is not imported here
because its Rust extension and bundled OpenSSL cost ~7 MB of RSS that the server would carry
only for this (docs/memory.md), and libsodium is faster and releases the GIL. Signatures
are deterministic, so both libraries give the same bytes (tests/federation/test_spec_vectors).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey as Ed25519SigningKey
from nacl.signing import VerifyKey

from federation.canonical_json import CanonicalJsonError, encode_canonical_json
from federation.hashing import (
    add_content_hash,
    decode_base64,
    encode_base64,
    redacted_signing_bytes,
)
from federation.ids import server_name_of
from federation.redaction import redact
from federation.room_versions import EventIdFormat, RoomVersion

ED25519: Final = "ed25519"
ED25519_SEED_BYTES: Final = 32
ED25519_PUBLIC_KEY_BYTES: Final = 32
ED25519_SIGNATURE_BYTES: Final = 64
# v5-signing-requirements.md: use the lesser of valid_until_ts and 7 days into the future.
MAX_KEY_VALIDITY_MS: Final = 7 * 24 * 60 * 60 * 1000
_KEY_VERSION_CHARS: Final = string.ascii_letters + string.digits + "_"


class SignatureError(ValueError):
    """A signature is missing, malformed or does not verify."""


@dataclass(frozen=True)
class SigningKey:
    """An ed25519 signing key: the algorithm, a key version and the 32-byte seed."""

    algorithm: str
    version: str
    seed: bytes = field(repr=False)
    _private: Ed25519SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm != ED25519:
            raise ValueError(f"unsupported signing algorithm {self.algorithm!r}")
        if not _is_valid_key_version(self.version):
            raise ValueError(f"invalid key version {self.version!r}")
        if len(self.seed) != ED25519_SEED_BYTES:
            raise ValueError(f"an ed25519 seed is {ED25519_SEED_BYTES} bytes")
        object.__setattr__(self, "_private", Ed25519SigningKey(self.seed))

    @property
    def key_id(self) -> str:
        """The signing key identifier, `ed25519:<version>`."""
        return f"{self.algorithm}:{self.version}"

    @property
    def public_key(self) -> bytes:
        return self._private.verify_key.encode()

    @property
    def public_key_base64(self) -> str:
        return encode_base64(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of `message`."""
        return self._private.sign(message).signature


def _is_valid_key_version(version: object) -> bool:
    # The key version follows `ed25519:` in key IDs and in the key file; keep it to
    # `[A-Za-z0-9_]` (what servers publish) so key IDs and key files always round-trip.
    return (
        isinstance(version, str)
        and 0 < len(version) <= 255
        and all(c in _KEY_VERSION_CHARS for c in version)
    )


def signing_key_from_seed(seed: bytes, version: str) -> SigningKey:
    return SigningKey(algorithm=ED25519, version=version, seed=bytes(seed))


def generate_signing_key(version: str | None = None) -> SigningKey:
    """A new random key; the version defaults to `a_` + 4 random characters."""
    if version is None:
        version = "a_" + "".join(secrets.choice(string.ascii_letters) for _ in range(4))
    return signing_key_from_seed(secrets.token_bytes(ED25519_SEED_BYTES), version)


def encode_signing_key_file(keys: Sequence[SigningKey]) -> str:
    """The Synapse key-file format: one `ed25519 <version> <unpadded base64 seed>` per line."""
    return "".join(f"{k.algorithm} {k.version} {encode_base64(k.seed)}\n" for k in keys)


def decode_signing_key_file(text: str) -> list[SigningKey]:
    """Parse a key file written by `encode_signing_key_file` (or Synapse); blank lines skipped."""
    keys: list[SigningKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(
                f"signing key file line {number}: expected '<algorithm> <version> <seed>'"
            )
        algorithm, version, seed_base64 = parts
        if algorithm != ED25519:
            raise ValueError(f"signing key file line {number}: unsupported algorithm {algorithm!r}")
        try:
            seed = decode_base64(seed_base64)
        except ValueError:
            raise ValueError(f"signing key file line {number}: seed is not base64") from None
        try:
            keys.append(SigningKey(algorithm=algorithm, version=version, seed=seed))
        except ValueError as e:
            raise ValueError(f"signing key file line {number}: {e}") from None
    return keys


def decode_verify_key(key_base64: str) -> bytes:
    """A published ed25519 verify key (unpadded base64) as its 32 raw bytes."""
    key = decode_base64(key_base64)
    if len(key) != ED25519_PUBLIC_KEY_BYTES:
        raise ValueError(f"an ed25519 verify key is {ED25519_PUBLIC_KEY_BYTES} bytes")
    return key


def _signed_bytes(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON of `obj` without `signatures` and `unsigned` ("Signing Details")."""
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )


def sign_json(obj: Mapping[str, Any], server_name: str, key: SigningKey) -> dict[str, Any]:
    """A copy of `obj` with this server's signature added under `signatures` (appendices
    "Signing Details"); existing signatures and `unsigned` are kept but not signed."""
    signature = encode_base64(key.sign(_signed_bytes(obj)))
    signed = dict(obj)
    signatures = {name: dict(sigs) for name, sigs in (obj.get("signatures") or {}).items()}
    signatures.setdefault(server_name, {})[key.key_id] = signature
    signed["signatures"] = signatures
    return signed


def verify_json(obj: Mapping[str, Any], server_name: str, key_id: str, verify_key: bytes) -> None:
    """Raise `SignatureError` unless `obj` carries a valid signature by `server_name` with
    `key_id` under `verify_key` (appendices "Checking for a Signature")."""
    if key_id.partition(":")[0] != ED25519:
        raise SignatureError(f"unsupported signing algorithm in key ID {key_id!r}")
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping) or not isinstance(signatures.get(server_name), Mapping):
        raise SignatureError(f"no signatures from {server_name}")
    signature_base64 = signatures[server_name].get(key_id)
    try:
        message = _signed_bytes(obj)
    except CanonicalJsonError as e:
        raise SignatureError(f"cannot check a signature on this JSON: {e}") from None
    verify_signature(message, signature_base64, server_name, key_id, verify_key)


def verify_signature(
    message: bytes, signature_base64: object, server_name: str, key_id: str, verify_key: bytes
) -> None:
    """Check one ed25519 signature (unpadded base64) by `server_name`'s `key_id` over the
    already encoded `message`; raise `SignatureError` (appendices "Checking for a Signature").

    The check is libsodium's (PyNaCl, what signedjson and Synapse verify with); it releases
    the GIL, so a batch of events can be verified on several threads.
    """
    algorithm, _, _ = key_id.partition(":")
    if algorithm != ED25519:
        raise SignatureError(f"unsupported signing algorithm in key ID {key_id!r}")
    if not isinstance(signature_base64, str):
        raise SignatureError(f"no signature from {server_name} with key {key_id}")
    try:
        signature = decode_base64(signature_base64)
    except ValueError:
        raise SignatureError(f"signature from {server_name} is not valid base64") from None
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise SignatureError(f"signature from {server_name} has the wrong length")
    public_key = _verify_key_object(verify_key)
    if public_key is None:
        raise SignatureError(f"verify key for {key_id} is not an ed25519 key")
    try:
        public_key.verify(message, signature)
    except BadSignatureError:
        raise SignatureError(f"invalid signature from {server_name} with key {key_id}") from None


@lru_cache(maxsize=1024)
def _verify_key_object(verify_key: bytes) -> VerifyKey | None:
    """The parsed public key (parsed once per key, not once per signature)."""
    if len(verify_key) != ED25519_PUBLIC_KEY_BYTES:
        return None
    try:
        return VerifyKey(verify_key)
    except ValueError:
        return None


def sign_event(
    pdu: Mapping[str, Any], room_version: RoomVersion, server_name: str, key: SigningKey
) -> dict[str, Any]:
    """Add this server's signature to an event (S2S "Signing Events").

    The redacted form is signed and the signature copied back to the full event. The content
    hash is added first if the event has none; an existing one is kept, so another server's
    event can be co-signed (restricted joins, invites) without touching its hash.
    """
    hashes = pdu.get("hashes")
    if not (isinstance(hashes, Mapping) and isinstance(hashes.get("sha256"), str)):
        pdu = add_content_hash(pdu)
    signed_redacted = sign_json(redact(pdu, room_version), server_name, key)
    result = dict(pdu)
    result["signatures"] = signed_redacted["signatures"]
    return result


def add_hashes_and_signatures(
    pdu: Mapping[str, Any], room_version: RoomVersion, server_name: str, key: SigningKey
) -> dict[str, Any]:
    """For a newly built outgoing event: (re)compute the content hash, then sign."""
    return sign_event(add_content_hash(pdu), room_version, server_name, key)


def verify_event_signature(
    pdu: Mapping[str, Any],
    room_version: RoomVersion,
    server_name: str,
    key_id: str,
    verify_key: bytes,
) -> None:
    """Check `server_name`'s signature over the redacted event; raise `SignatureError`.

    Works for the full event and for a redacted copy alike.
    """
    if key_id.partition(":")[0] != ED25519:
        raise SignatureError(f"unsupported signing algorithm in key ID {key_id!r}")
    signatures = pdu.get("signatures")
    if not isinstance(signatures, Mapping) or not isinstance(signatures.get(server_name), Mapping):
        raise SignatureError(f"no signatures from {server_name}")
    try:
        message = redacted_signing_bytes(pdu, room_version)
    except CanonicalJsonError as e:
        raise SignatureError(f"cannot check a signature on this JSON: {e}") from None
    verify_signature(message, signatures[server_name].get(key_id), server_name, key_id, verify_key)


def servers_required_to_sign(pdu: Mapping[str, Any], room_version: RoomVersion) -> set[str]:
    """Servers whose signatures an event must carry (S2S "Validating hashes and signatures
    on received events", v8 auth rule 4.2).

    The sender's server; in v1–v2 also the server in the `event_id`; from v8 the server of
    `content.join_authorised_via_users_server` on `m.room.member` joins. Third-party invite
    signatures are checked by the auth rules, not here. An authorising user that is not a user
    ID adds nothing here: the auth rules reject such an event.
    """
    sender = pdu.get("sender")
    if not isinstance(sender, str) or ":" not in sender:
        raise SignatureError(f"event sender {sender!r} is not a user ID")
    servers = {server_name_of(sender)}
    if room_version.event_id_format is EventIdFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str) or ":" not in event_id:
            raise SignatureError(f"event_id {event_id!r} has no server name")
        servers.add(server_name_of(event_id))
    content = pdu.get("content")
    if (
        room_version.restricted_join_rule
        and pdu.get("type") == "m.room.member"
        and isinstance(content, Mapping)
        and content.get("membership") == "join"
    ):
        authoriser = content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str) and authoriser.startswith("@") and ":" in authoriser:
            servers.add(server_name_of(authoriser))
    return servers


def key_valid_for_event(
    valid_until_ts: int,
    origin_server_ts: int,
    room_version: RoomVersion,
    *,
    now_ms: int | None = None,
) -> bool:
    """Whether a key with `valid_until_ts` may verify an event sent at `origin_server_ts`.

    From v5 the key must be valid at `origin_server_ts` (v5-signing-requirements.md); given
    `now_ms`, `valid_until_ts` is first capped at 7 days into the future. Earlier versions do
    not enforce key validity.
    """
    if not room_version.enforce_key_validity:
        return True
    if now_ms is not None:
        valid_until_ts = min(valid_until_ts, now_ms + MAX_KEY_VALIDITY_MS)
    return valid_until_ts >= origin_server_ts
