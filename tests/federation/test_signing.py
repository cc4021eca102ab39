"""Signing keys, key files, signed JSON, event signatures, required signers, key validity."""

from __future__ import annotations

import copy
import io
import re
from typing import Any

import pytest
import signedjson.key
import signedjson.sign
from hypothesis import assume, given
from hypothesis import strategies as st

from federation.canonical_json import CanonicalJsonError, encode_canonical_json, parse_json
from federation.hashing import check_content_hash, compute_event_id, decode_base64, encode_base64
from federation.redaction import redact
from federation.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V2,
    V3,
    V4,
    V5,
    V7,
    V8,
    V11,
    V12,
    RoomVersion,
)
from federation.signing import (
    MAX_KEY_VALIDITY_MS,
    SignatureError,
    SigningKey,
    add_hashes_and_signatures,
    decode_signing_key_file,
    decode_verify_key,
    encode_signing_key_file,
    generate_signing_key,
    key_valid_for_event,
    servers_required_to_sign,
    sign_event,
    sign_json,
    signing_key_from_seed,
    verify_event_signature,
    verify_json,
)

SEED = bytes(range(32))
KEY = signing_key_from_seed(SEED, "a_test")
OTHER_KEY = signing_key_from_seed(bytes(range(1, 33)), "b_test")


# Signing keys and key files.


def test_signing_key_derives_the_same_public_key_as_signedjson() -> None:
    reference = signedjson.key.decode_signing_key_base64("ed25519", "a_test", encode_base64(SEED))
    expected = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(reference))
    assert KEY.public_key_base64 == expected
    assert decode_verify_key(KEY.public_key_base64) == KEY.public_key
    assert KEY.key_id == "ed25519:a_test"


def test_signing_key_repr_does_not_show_the_seed() -> None:
    assert encode_base64(SEED) not in repr(KEY)
    assert SEED.hex() not in repr(KEY)
    assert "seed" not in repr(KEY)


def test_signing_keys_compare_by_value() -> None:
    assert signing_key_from_seed(SEED, "a_test") == KEY
    assert hash(signing_key_from_seed(SEED, "a_test")) == hash(KEY)
    assert signing_key_from_seed(SEED, "other") != KEY


@pytest.mark.parametrize(
    ("algorithm", "version", "seed", "message"),
    [
        ("curve25519", "a", SEED, "algorithm"),
        ("ed25519", "", SEED, "version"),
        ("ed25519", "a b", SEED, "version"),
        ("ed25519", "a:b", SEED, "version"),
        ("ed25519", "a", SEED[:31], "32 bytes"),
        ("ed25519", "a", SEED + b"x", "32 bytes"),
    ],
)
def test_invalid_signing_keys_are_refused(
    algorithm: str, version: str, seed: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SigningKey(algorithm=algorithm, version=version, seed=seed)


def test_generated_keys_are_random_with_synapse_style_versions() -> None:
    first, second = generate_signing_key(), generate_signing_key()
    assert re.fullmatch(r"a_[A-Za-z]{4}", first.version)
    assert first.seed != second.seed
    assert generate_signing_key("auto").version == "auto"


def test_key_file_round_trips() -> None:
    text = encode_signing_key_file([KEY, OTHER_KEY])
    assert (
        text
        == f"ed25519 a_test {encode_base64(SEED)}\ned25519 b_test {encode_base64(OTHER_KEY.seed)}\n"
    )
    assert decode_signing_key_file(text) == [KEY, OTHER_KEY]


def test_key_files_written_by_signedjson_are_read() -> None:
    reference = signedjson.key.generate_signing_key("a_AbCd")
    out = io.StringIO()
    signedjson.key.write_signing_keys(out, [reference])
    (key,) = decode_signing_key_file("\n" + out.getvalue() + "\n\n")
    assert key.version == "a_AbCd"
    assert key.public_key == bytes(reference.verify_key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ed25519 a_test", "line 1: expected"),
        ("\ned25519 a b c", "line 2: expected"),
        ("rsa a_test AAAA", "unsupported algorithm 'rsa'"),
        ("ed25519 a_test not*base64", "not base64"),
        ("ed25519 a_test AAAA", "32 bytes"),
        ("ed25519 a:b " + encode_base64(SEED), "invalid key version"),
    ],
)
def test_bad_key_files_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_signing_key_file(text)


def test_decode_verify_key_checks_the_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        decode_verify_key(encode_base64(b"x" * 31))
    with pytest.raises(ValueError):
        decode_verify_key("***")


# Signed JSON.


def test_sign_json_matches_signedjson() -> None:
    obj = {"name": "example.org", "list": [1, "é", None], "unsigned": {"age_ts": 5}}
    ours = sign_json(obj, "example.org", KEY)
    reference = signedjson.key.decode_signing_key_base64("ed25519", "a_test", encode_base64(SEED))
    theirs = signedjson.sign.sign_json(copy.deepcopy(obj), "example.org", reference)
    assert ours == theirs


def test_sign_json_keeps_unsigned_and_other_signatures_and_does_not_mutate() -> None:
    obj = {
        "a": 1,
        "unsigned": {"age": 1},
        "signatures": {"other.org": {"ed25519:x": "c2ln"}, "example.org": {"ed25519:old": "b2xk"}},
    }
    before = copy.deepcopy(obj)
    signed = sign_json(obj, "example.org", KEY)
    assert obj == before
    assert signed["unsigned"] == {"age": 1}
    assert signed["signatures"]["other.org"] == {"ed25519:x": "c2ln"}
    assert set(signed["signatures"]["example.org"]) == {"ed25519:old", "ed25519:a_test"}
    verify_json(signed, "example.org", KEY.key_id, KEY.public_key)


def test_signatures_do_not_cover_unsigned_or_other_signatures() -> None:
    signed = sign_json({"a": 1}, "example.org", KEY)
    signed = sign_json(signed, "other.org", OTHER_KEY)
    changed = {**signed, "unsigned": {"added": "later"}}
    verify_json(changed, "example.org", KEY.key_id, KEY.public_key)
    verify_json(changed, "other.org", OTHER_KEY.key_id, OTHER_KEY.public_key)


def _signature(obj: dict[str, Any]) -> str:
    value: str = obj["signatures"]["example.org"][KEY.key_id]
    return value


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("signatures"), "no signatures from example.org"),
        (lambda o: o.update(signatures={"x.org": {}}), "no signatures from example.org"),
        (lambda o: o.update(signatures={"example.org": "sig"}), "no signatures"),
        (lambda o: o["signatures"]["example.org"].clear(), "no signature .* ed25519:a_test"),
        (lambda o: o["signatures"]["example.org"].update({"ed25519:a_test": 5}), "no signature"),
        (
            lambda o: o["signatures"]["example.org"].update({"ed25519:a_test": "!!"}),
            "not valid base64",
        ),
        (
            lambda o: o["signatures"]["example.org"].update({"ed25519:a_test": "AAAA"}),
            "wrong length",
        ),
        (lambda o: o.update(a=2), "invalid signature"),
        (lambda o: o.update(extra=None), "invalid signature"),
        (lambda o: o.pop("a"), "invalid signature"),
        (
            lambda o: o["signatures"]["example.org"].update(
                {"ed25519:a_test": ("B" if _signature(o)[0] == "A" else "A") + _signature(o)[1:]}
            ),
            "invalid signature",
        ),
        (lambda o: o.update(a=float("nan")), "cannot check"),
    ],
)
def test_verify_json_failures(mutate: Any, message: str) -> None:
    signed = sign_json({"a": 1}, "example.org", KEY)
    mutate(signed)
    with pytest.raises(SignatureError, match=message):
        verify_json(signed, "example.org", KEY.key_id, KEY.public_key)


def test_verify_json_with_the_wrong_key_or_algorithm() -> None:
    signed = sign_json({"a": 1}, "example.org", KEY)
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_json(signed, "example.org", KEY.key_id, OTHER_KEY.public_key)
    with pytest.raises(SignatureError, match="not an ed25519 key"):
        verify_json(signed, "example.org", KEY.key_id, b"short")
    with pytest.raises(SignatureError, match="unsupported signing algorithm"):
        verify_json(signed, "example.org", "curve25519:a_test", KEY.public_key)


def test_verify_json_accepts_signatures_made_by_signedjson() -> None:
    reference = signedjson.key.decode_signing_key_base64("ed25519", "a_test", encode_base64(SEED))
    theirs = signedjson.sign.sign_json({"x": ["y", {"z": 1}]}, "example.org", reference)
    verify_json(theirs, "example.org", KEY.key_id, KEY.public_key)


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=10,
)
_objects = st.dictionaries(
    _text.filter(lambda k: k not in ("signatures", "unsigned")), _json, min_size=1
)
_ALNUM = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@given(_objects)
def test_sign_then_verify_holds(obj: dict[str, Any]) -> None:
    verify_json(sign_json(obj, "example.org", KEY), "example.org", KEY.key_id, KEY.public_key)


def _plain_string_positions(encoded: bytes) -> list[int]:
    """Indices of unescaped printable ASCII bytes inside strings of canonical JSON."""
    positions, in_string, escaped = [], False, False
    for i, byte in enumerate(encoded):
        if not in_string:
            in_string = byte == ord('"')
        elif escaped:
            escaped = False
        elif byte == ord("\\"):
            escaped = True
        elif byte == ord('"'):
            in_string = False
        elif 0x20 <= byte < 0x7F:
            positions.append(i)
    return positions


@given(_objects, st.data())
def test_any_byte_change_breaks_the_signature(obj: dict[str, Any], data: st.DataObject) -> None:
    # Change one byte of a key or string value to another letter or digit: the result is
    # still JSON, and the signature must no longer hold.
    signed = sign_json(obj, "example.org", KEY)
    original = encode_canonical_json(obj)
    positions = _plain_string_positions(original)
    assume(positions)
    position = data.draw(st.sampled_from(positions))
    replacement = data.draw(st.sampled_from([b for b in _ALNUM if b != original[position]]))
    changed = original[:position] + bytes([replacement]) + original[position + 1 :]
    try:
        tampered = parse_json(changed, strict=False)
    except CanonicalJsonError:
        assume(False)  # e.g. two keys became equal
    assume("signatures" not in tampered and "unsigned" not in tampered)
    tampered["signatures"] = signed["signatures"]
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_json(tampered, "example.org", KEY.key_id, KEY.public_key)


# Events.


def _event(version: RoomVersion, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "room_id": "!r:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "type": "m.room.message",
        "content": {"body": "hello"},
        "prev_events": [],
        "auth_events": [],
        "depth": 5,
        "unsigned": {"age": 3},
    }
    if version.has_event_id_field:
        event["event_id"] = "$e:example.org"
    event.update(overrides)
    return event


@pytest.mark.parametrize("version", list(KNOWN_ROOM_VERSIONS.values()), ids=lambda v: v.identifier)
def test_signed_events_verify_in_full_and_redacted(version: RoomVersion) -> None:
    signed = add_hashes_and_signatures(_event(version), version, "example.org", KEY)
    assert check_content_hash(signed)
    assert signed["unsigned"] == {"age": 3}
    assert signed["content"] == {"body": "hello"}
    verify_event_signature(signed, version, "example.org", KEY.key_id, KEY.public_key)
    redacted = redact(signed, version)
    verify_event_signature(redacted, version, "example.org", KEY.key_id, KEY.public_key)


def test_event_signature_covers_the_redacted_form_and_the_hash_covers_the_rest() -> None:
    signed = add_hashes_and_signatures(_event(V11), V11, "example.org", KEY)
    changed_content = {**signed, "content": {"body": "changed"}}
    # The signature still holds (content is redactable), but the content hash does not.
    verify_event_signature(changed_content, V11, "example.org", KEY.key_id, KEY.public_key)
    assert not check_content_hash(changed_content)
    for key, value in (("depth", 6), ("sender", "@mallory:example.org"), ("type", "m.x")):
        with pytest.raises(SignatureError, match="invalid signature"):
            verify_event_signature(
                {**signed, key: value}, V11, "example.org", KEY.key_id, KEY.public_key
            )


def test_sign_event_co_signs_without_touching_the_hash_or_other_signatures() -> None:
    original = add_hashes_and_signatures(_event(V11), V11, "example.org", KEY)
    before = copy.deepcopy(original)
    cosigned = sign_event(original, V11, "resident.org", OTHER_KEY)
    assert original == before
    assert cosigned["hashes"] == original["hashes"]
    assert set(cosigned["signatures"]) == {"example.org", "resident.org"}
    verify_event_signature(cosigned, V11, "example.org", KEY.key_id, KEY.public_key)
    verify_event_signature(cosigned, V11, "resident.org", OTHER_KEY.key_id, OTHER_KEY.public_key)


def test_sign_event_adds_a_missing_content_hash() -> None:
    signed = sign_event(_event(V11, hashes={}), V11, "example.org", KEY)
    assert check_content_hash(signed)


def test_add_hashes_and_signatures_recomputes_a_stale_hash() -> None:
    signed = add_hashes_and_signatures(
        _event(V11, hashes={"sha256": "c3RhbGU"}), V11, "example.org", KEY
    )
    assert check_content_hash(signed)


def test_event_id_is_unchanged_by_signing_only_for_hash_based_versions() -> None:
    event = add_hashes_and_signatures(_event(V11), V11, "example.org", KEY)
    cosigned = sign_event(event, V11, "resident.org", OTHER_KEY)
    assert compute_event_id(event, V11) == compute_event_id(cosigned, V11)


# Servers that must sign.


def test_sender_server_signs_from_v3() -> None:
    for version in (V3, V4, V11, V12):
        assert servers_required_to_sign(_event(version), version) == {"example.org"}


@pytest.mark.parametrize("version", [V1, V2])
def test_v1_and_v2_also_need_the_event_id_server(version: RoomVersion) -> None:
    event = _event(version, event_id="$e:origin.org")
    assert servers_required_to_sign(event, version) == {"example.org", "origin.org"}
    same = _event(version, event_id="$e:example.org")
    assert servers_required_to_sign(same, version) == {"example.org"}
    with pytest.raises(SignatureError, match="event_id"):
        servers_required_to_sign(_event(version, event_id=None), version)


def _restricted_join(version: RoomVersion, membership: str = "join", **content: Any) -> Any:
    return _event(
        version,
        type="m.room.member",
        state_key="@alice:example.org",
        content={"membership": membership, **content},
    )


def test_restricted_join_needs_the_authorising_server_from_v8() -> None:
    auth = {"join_authorised_via_users_server": "@bob:resident.org:8448"}
    for version in (V8, V11, V12):
        event = _restricted_join(version, **auth)
        assert servers_required_to_sign(event, version) == {"example.org", "resident.org:8448"}
    assert servers_required_to_sign(_restricted_join(V7, **auth), V7) == {"example.org"}
    leave = _restricted_join(V11, "leave", **auth)
    assert servers_required_to_sign(leave, V11) == {"example.org"}
    assert servers_required_to_sign(_restricted_join(V11), V11) == {"example.org"}


@pytest.mark.parametrize("authoriser", [5, "bob", "bob:resident.org", None])
def test_an_invalid_authorising_user_adds_no_server(authoriser: Any) -> None:
    event = _restricted_join(V11, join_authorised_via_users_server=authoriser)
    assert servers_required_to_sign(event, V11) == {"example.org"}


@pytest.mark.parametrize("sender", [None, 5, "alice"])
def test_an_event_without_a_sender_server_is_refused(sender: Any) -> None:
    with pytest.raises(SignatureError, match="sender"):
        servers_required_to_sign(_event(V11, sender=sender), V11)


# Key validity.


@pytest.mark.parametrize("version", [V1, V2, V3, V4])
def test_key_validity_is_not_enforced_before_v5(version: RoomVersion) -> None:
    assert key_valid_for_event(valid_until_ts=0, origin_server_ts=10**12, room_version=version)


@pytest.mark.parametrize("version", [V5, V11, V12])
def test_key_must_be_valid_at_the_events_origin_server_ts_from_v5(version: RoomVersion) -> None:
    assert key_valid_for_event(1000, 999, version)
    assert key_valid_for_event(1000, 1000, version)
    assert not key_valid_for_event(1000, 1001, version)


def test_key_validity_is_capped_at_seven_days_from_now() -> None:
    now = 1_000_000
    far_future = now + 365 * MAX_KEY_VALIDITY_MS
    assert key_valid_for_event(far_future, now + MAX_KEY_VALIDITY_MS, V5, now_ms=now)
    assert not key_valid_for_event(far_future, now + MAX_KEY_VALIDITY_MS + 1, V5, now_ms=now)
    assert key_valid_for_event(far_future, now + MAX_KEY_VALIDITY_MS + 1, V5)


def test_decoded_signatures_are_64_bytes() -> None:
    signed = sign_json({}, "example.org", KEY)
    assert len(decode_base64(_signature(signed))) == 64
