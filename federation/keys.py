"""Server key responses: publish ours, check theirs, read a notary's answer.

Spec: S2S "Retrieving server keys" — "Publishing Keys" (`keys_server.yaml`,
`definitions/keys.yaml`) and "Querying Keys Through Another Server" (`keys_query.yaml`,
`definitions/keys_query_response.yaml`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from federation.ids import is_valid_server_name
from federation.signing import (
    ED25519,
    SignatureError,
    SigningKey,
    decode_verify_key,
    sign_json,
    verify_json,
)

# definitions/keys.yaml: a key ID is `algorithm:version`, the version matching `[a-zA-Z0-9_]`.
_ED25519_KEY_ID: Final = re.compile(r"ed25519:[a-zA-Z0-9_]+")


class KeyResponseError(ValueError):
    """A server key response is malformed, for the wrong server, or not properly self-signed."""


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """A verified `/_matrix/key/v2/server` response: raw ed25519 public keys by key ID."""

    server_name: str
    # Keys are valid until this time, capped by the reader at 7 days ahead (see signing.py).
    valid_until_ts: int
    # Valid for requests and events.
    verify_keys: Mapping[str, bytes]
    # Valid for events only: `(public key, expired_ts)`.
    old_verify_keys: Mapping[str, tuple[bytes, int]]


def build_server_keys(
    server_name: str,
    signing_key: SigningKey,
    valid_until_ts: int,
    old_verify_keys: Mapping[str, tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """Our `/_matrix/key/v2/server` response body, signed with `signing_key`.

    `old_verify_keys` maps a retired key ID to `(unpadded base64 public key, expired_ts)`.
    """
    body = {
        "server_name": server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": {signing_key.key_id: {"key": signing_key.public_key_base64}},
        "old_verify_keys": {
            key_id: {"key": public_base64, "expired_ts": expired_ts}
            for key_id, (public_base64, expired_ts) in (old_verify_keys or {}).items()
        },
    }
    return sign_json(body, server_name, signing_key)


def parse_and_verify_server_keys(body: Any, expected_server_name: str | None = None) -> ServerKeys:
    """Check a server key response and its self-signatures.

    The response must be signed by the server itself with every key it lists in
    `verify_keys` (those are the keys it claims to hold). Keys of algorithms other than
    ed25519 cannot be checked and are left out. When fetched directly from, or asked of a
    notary about, a server, `expected_server_name` is that server.
    """
    if not isinstance(body, Mapping):
        raise KeyResponseError("server key response must be a JSON object")
    server_name = body.get("server_name")
    if not isinstance(server_name, str) or not is_valid_server_name(server_name):
        raise KeyResponseError("server_name must be a server name")
    if expected_server_name is not None and server_name != expected_server_name:
        raise KeyResponseError(f"keys are for {server_name!r}, not {expected_server_name!r}")
    valid_until_ts = body.get("valid_until_ts")
    if not isinstance(valid_until_ts, int) or isinstance(valid_until_ts, bool):
        raise KeyResponseError("valid_until_ts must be an integer")
    verify_keys = {
        key_id: _decode_key(entry, key_id)
        for key_id, entry in _key_entries(body, "verify_keys", required=True).items()
    }
    if not verify_keys:
        raise KeyResponseError(f"{server_name} published no ed25519 verify keys")
    old_verify_keys = {
        key_id: (_decode_key(entry, key_id), _expired_ts(entry, key_id))
        for key_id, entry in _key_entries(body, "old_verify_keys", required=False).items()
    }
    for key_id, verify_key in verify_keys.items():
        try:
            verify_json(body, server_name, key_id, verify_key)
        except SignatureError as e:
            raise KeyResponseError(f"key response is not self-signed with {key_id}: {e}") from None
    return ServerKeys(
        server_name=server_name,
        valid_until_ts=valid_until_ts,
        verify_keys=MappingProxyType(verify_keys),
        old_verify_keys=MappingProxyType(old_verify_keys),
    )


def parse_key_query_response(body: Any) -> list[Mapping[str, Any]]:
    """The `server_keys` of a notary's `/_matrix/key/v2/query` response.

    Each entry is a key response of the queried server with the notary's signature added; the
    caller checks each with `parse_and_verify_server_keys` and, if it trusts the notary, the
    notary's signature with `verify_json`.
    """
    if not isinstance(body, Mapping):
        raise KeyResponseError("key query response must be a JSON object")
    server_keys = body.get("server_keys")
    if not isinstance(server_keys, list):
        raise KeyResponseError("server_keys must be a list")
    if not all(isinstance(entry, Mapping) for entry in server_keys):
        raise KeyResponseError("every entry of server_keys must be a JSON object")
    return list(server_keys)


def build_key_query_response(server_keys: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A notary's response; each entry should already carry the notary's signature."""
    return {"server_keys": [dict(entry) for entry in server_keys]}


def _key_entries(body: Mapping[str, Any], field: str, *, required: bool) -> dict[str, Any]:
    """The ed25519 entries of `verify_keys` / `old_verify_keys`; other algorithms are left out
    (we could neither check nor use them)."""
    entries = body.get(field)
    if entries is None and not required:
        return {}
    if not isinstance(entries, Mapping):
        raise KeyResponseError(f"{field} must be a JSON object")
    ed25519_entries = {
        key_id: entry for key_id, entry in entries.items() if key_id.partition(":")[0] == ED25519
    }
    for key_id in ed25519_entries:
        if not _ED25519_KEY_ID.fullmatch(key_id):
            raise KeyResponseError(f"invalid key ID {key_id!r} in {field}")
    return ed25519_entries


def _decode_key(entry: Any, key_id: str) -> bytes:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
        raise KeyResponseError(f"{key_id} has no key")
    try:
        return decode_verify_key(entry["key"])
    except ValueError as e:
        raise KeyResponseError(f"{key_id}: {e}") from None


def _expired_ts(entry: Mapping[str, Any], key_id: str) -> int:
    expired_ts = entry.get("expired_ts")
    if not isinstance(expired_ts, int) or isinstance(expired_ts, bool):
        raise KeyResponseError(f"{key_id}: expired_ts must be an integer")
    return expired_ts
