"""Receipt checks 1–3 computed once per PDU (federation/pdu_receipt.py) and the helpers behind
them: the shared-value redaction, the redacted signing bytes, and signature checks on bytes."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from federation.hashing import (
    compute_event_id,
    encode_base64,
    event_id_from_signing_bytes,
    redacted_signing_bytes,
)
from federation.pdu import InvalidPdu
from federation.pdu_receipt import parse_received_pdu, signatures_to_check
from federation.redaction import redact, redacted_view
from federation.room_versions import room_version
from federation.signing import (
    SignatureError,
    add_hashes_and_signatures,
    generate_signing_key,
    verify_event_signature,
    verify_signature,
)

V10 = room_version("10")
V1 = room_version("1")
KEY = generate_signing_key("k1")
OTHER_KEY = generate_signing_key("k2")


def _member(version: Any = V10, **content: Any) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": "m.room.member",
        "state_key": "@alice:remote.test",
        "sender": "@alice:remote.test",
        "room_id": "!room:remote.test",
        "content": {"membership": "join", "displayname": "Alice", **content},
        "depth": 5,
        "origin_server_ts": 1_700_000_000_000,
        "prev_events": [],
        "auth_events": [],
        "unsigned": {"age": 10},
    }
    if version.has_event_id_field:
        pdu["event_id"] = "$member:remote.test"
    return add_hashes_and_signatures(pdu, version, "remote.test", KEY)


def test_redacted_view_equals_the_redacted_copy_and_leaves_the_event_alone() -> None:
    pdu = _member(extra={"nested": [1, 2]})
    before = copy.deepcopy(pdu)
    assert redacted_view(pdu, V10) == redact(pdu, V10)
    assert pdu == before


def test_signing_bytes_hash_to_the_event_id() -> None:
    pdu = _member()
    signing = redacted_signing_bytes(pdu, V10)
    expected = "$" + encode_base64(hashlib.sha256(signing).digest(), urlsafe=True)
    assert event_id_from_signing_bytes(signing, V10) == expected == compute_event_id(pdu, V10)


def test_event_id_from_signing_bytes_refuses_room_versions_with_event_id_fields() -> None:
    with pytest.raises(ValueError):
        event_id_from_signing_bytes(b"{}", V1)


def test_verify_signature_accepts_the_senders_signature_over_the_signing_bytes() -> None:
    pdu = _member()
    signature = pdu["signatures"]["remote.test"][KEY.key_id]
    verify_signature(
        redacted_signing_bytes(pdu, V10), signature, "remote.test", KEY.key_id, KEY.public_key
    )


@pytest.mark.parametrize(
    ("signature", "key_id", "message"),
    [
        ("c2ln", "ed25519:k1", "wrong length"),
        ("!!!", "ed25519:k1", "not valid base64"),
        (None, "ed25519:k1", "no signature"),
        ("A" * 86, "curve25519:k1", "unsupported signing algorithm"),
    ],
)
def test_verify_signature_rejects_malformed_signatures(
    signature: object, key_id: str, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_signature(b"{}", signature, "remote.test", key_id, KEY.public_key)


def test_verify_signature_rejects_another_key_and_altered_bytes() -> None:
    pdu = _member()
    signing = redacted_signing_bytes(pdu, V10)
    signature = pdu["signatures"]["remote.test"][KEY.key_id]
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_signature(signing, signature, "remote.test", KEY.key_id, OTHER_KEY.public_key)
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_signature(signing + b" ", signature, "remote.test", KEY.key_id, KEY.public_key)
    with pytest.raises(SignatureError, match="not an ed25519 key"):
        verify_signature(signing, signature, "remote.test", KEY.key_id, b"short")


def test_verify_event_signature_still_checks_the_redacted_event() -> None:
    pdu = _member()
    verify_event_signature(pdu, V10, "remote.test", KEY.key_id, KEY.public_key)
    verify_event_signature(redact(pdu, V10), V10, "remote.test", KEY.key_id, KEY.public_key)
    altered = {**pdu, "depth": 6}
    with pytest.raises(SignatureError):
        verify_event_signature(altered, V10, "remote.test", KEY.key_id, KEY.public_key)


@pytest.mark.parametrize("version_id", ["1", "3", "10", "11", "12"])
def test_parse_received_pdu_computes_the_same_event_id_as_compute_event_id(
    version_id: str,
) -> None:
    version = room_version(version_id)
    pdu = _member(version)
    received = parse_received_pdu(pdu, version)
    assert received.event.event_id == compute_event_id(pdu, version)
    assert received.content_hash_matches
    assert received.signing_bytes == redacted_signing_bytes(pdu, version)
    assert received.event_to_store() is received.event


def test_a_content_hash_mismatch_keeps_only_the_redacted_event_under_the_same_id() -> None:
    pdu = _member()
    pdu["content"]["displayname"] = "Mallory"  # not covered by the signature, but by the hash
    received = parse_received_pdu(pdu, V10)
    assert not received.content_hash_matches
    stored = received.event_to_store()
    assert stored.event_id == received.event.event_id == compute_event_id(pdu, V10)
    assert dict(stored.content) == {"membership": "join"}


def test_parse_received_pdu_drops_an_invalid_event() -> None:
    pdu = _member()
    del pdu["depth"]
    with pytest.raises(InvalidPdu):
        parse_received_pdu(pdu, V10)
    floats = _member(score=1.5)
    with pytest.raises(InvalidPdu):
        parse_received_pdu(floats, V10)


def test_signatures_to_check_lists_the_senders_ed25519_signatures() -> None:
    pdu = _member()
    pdu["signatures"]["remote.test"]["curve25519:x"] = "abc"
    pdu["signatures"]["bystander.test"] = {"ed25519:z": "abc"}
    found = signatures_to_check(parse_received_pdu(pdu, V10))
    assert found == {"remote.test": {KEY.key_id: pdu["signatures"]["remote.test"][KEY.key_id]}}


def test_signatures_to_check_requires_the_senders_server_and_the_authorising_server() -> None:
    unsigned = _member()
    unsigned["signatures"] = {"elsewhere.test": {"ed25519:a": "abc"}}
    with pytest.raises(SignatureError, match=r"not signed by remote\.test"):
        signatures_to_check(parse_received_pdu(unsigned, V10))
    restricted = _member(join_authorised_via_users_server="@bob:resident.test")
    with pytest.raises(SignatureError, match=r"not signed by resident\.test"):
        signatures_to_check(parse_received_pdu(restricted, V10))
    v1 = _member(V1)
    v1["event_id"] = "$member:origin.test"
    with pytest.raises(SignatureError, match=r"not signed by origin\.test"):
        signatures_to_check(parse_received_pdu(v1, V1))
