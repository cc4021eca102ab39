"""Unpadded base64, content hashes, reference hashes, event IDs and v12 room IDs."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from federation.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    decode_base64,
    encode_base64,
    room_id_for_create_event,
)
from federation.ids import is_valid_event_id, is_valid_room_id
from federation.room_versions import KNOWN_ROOM_VERSIONS, V1, V2, V3, V4, V5, V6, V11, V12


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"fooba", "Zm9vYmE"),
        (b"foobar", "Zm9vYmFy"),
    ],
)
def test_unpadded_base64_examples_from_the_appendix(raw: bytes, encoded: str) -> None:
    assert encode_base64(raw) == encoded
    assert decode_base64(encoded) == raw
    assert decode_base64(base64.b64encode(raw).decode()) == raw  # padded input is accepted


def test_url_safe_base64_uses_minus_and_underscore() -> None:
    raw = bytes([0xFB, 0xFF, 0xBF])
    assert encode_base64(raw) == "+/+/"
    assert encode_base64(raw, urlsafe=True) == "-_-_"
    assert decode_base64("-_-_") == raw
    assert decode_base64("+/+/") == raw


@pytest.mark.parametrize("bad", ["Z", "Zm9vY", "Zm9v!", "Zm 9v", "Zg===", "=Zg", "Zm9v\n"])
def test_invalid_base64_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        decode_base64(bad)


def test_decode_base64_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        decode_base64(b"Zg")  # type: ignore[arg-type]


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "room_id": "!r:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "type": "m.room.message",
        "content": {"body": "hello", "msgtype": "m.text"},
        "prev_events": [],
        "auth_events": [],
        "depth": 5,
        "hashes": {"sha256": "ignored"},
        "signatures": {"example.org": {"ed25519:a": "ignored"}},
        "unsigned": {"age": 10},
    }
    event.update(overrides)
    return event


def _sha256_of(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).digest()


def test_content_hash_covers_everything_but_unsigned_signatures_and_hashes() -> None:
    event = _event()
    stripped = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    assert compute_content_hash(event) == _sha256_of(stripped)
    assert compute_content_hash(event) == compute_content_hash(
        _event(unsigned={"age": 99}, signatures={}, hashes={"sha256": "other"})
    )
    assert compute_content_hash(event) != compute_content_hash(_event(content={"body": "hi"}))
    assert compute_content_hash(event) != compute_content_hash(_event(extra_key=1))


def test_add_content_hash_returns_a_copy_with_the_hash() -> None:
    event = _event(hashes={"sha256": "stale", "other": "kept"})
    hashed = add_content_hash(event)
    assert event["hashes"] == {"sha256": "stale", "other": "kept"}
    assert hashed["hashes"] == {"sha256": encode_base64(_sha256_of(_strip(event))), "other": "kept"}
    assert check_content_hash(hashed)


def _strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}


def test_check_content_hash_detects_changes_and_bad_values() -> None:
    hashed = add_content_hash(_event())
    assert check_content_hash(hashed)
    assert check_content_hash({**hashed, "unsigned": {"age": 1}, "signatures": {}})
    assert not check_content_hash({**hashed, "content": {"body": "changed"}})
    assert not check_content_hash({**hashed, "hashes": {}})
    assert not check_content_hash({**hashed, "hashes": {"sha256": "!!"}})
    assert not check_content_hash({**hashed, "hashes": {"sha256": 5}})
    assert not check_content_hash({**hashed, "hashes": "sha256"})
    padded = hashed["hashes"]["sha256"] + "="
    assert check_content_hash({**hashed, "hashes": {"sha256": padded}})


def test_reference_hash_is_over_the_redacted_event_without_signatures_or_unsigned() -> None:
    event = _event()
    expected = {k: v for k, v in event.items() if k not in ("signatures", "unsigned")} | {
        "content": {}
    }
    assert compute_reference_hash(event, V4) == _sha256_of(expected)
    # Non-essential keys, signatures and unsigned data do not change it.
    assert compute_reference_hash(event, V4) == compute_reference_hash(
        _event(content={}, signatures={}, unsigned={"x": 1}, age_ts=5, junk="x"), V4
    )
    # Hashes and essential keys do.
    assert compute_reference_hash(event, V4) != compute_reference_hash(
        _event(hashes={"sha256": "other"}), V4
    )
    assert compute_reference_hash(event, V4) != compute_reference_hash(_event(depth=6), V4)


def test_v1_and_v2_event_ids_are_the_event_id_field() -> None:
    for version in (V1, V2):
        assert compute_event_id(_event(event_id="$abc:example.org"), version) == "$abc:example.org"
        with pytest.raises(ValueError, match="event_id"):
            compute_event_id(_event(), version)


def _event_whose_hash_needs_both_alphabets(version: Any) -> dict[str, Any]:
    """Search (deterministically) for an event whose reference hash has `+`/`/` characters."""
    for depth in range(1, 1000):
        event = _event(depth=depth)
        std = encode_base64(compute_reference_hash(event, version))
        if "+" in std and "/" in std:
            return event
    raise AssertionError("unreachable: no such event in 1000 tries")


def test_v3_event_ids_use_standard_base64_of_the_reference_hash() -> None:
    event = _event_whose_hash_needs_both_alphabets(V3)
    event_id = compute_event_id(event, V3)
    assert event_id == "$" + base64.b64encode(compute_reference_hash(event, V3)).decode().rstrip(
        "="
    )
    assert len(event_id) == 44 and ("+" in event_id or "/" in event_id)
    assert is_valid_event_id(event_id)


@pytest.mark.parametrize("version", [V4, V5, V6, V11, V12])
def test_v4_and_later_event_ids_use_url_safe_base64(version: Any) -> None:
    event = _event_whose_hash_needs_both_alphabets(version)
    event_id = compute_event_id(event, version)
    raw = compute_reference_hash(event, version)
    assert event_id == "$" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "+" not in event_id and "/" not in event_id
    assert is_valid_event_id(event_id)


def test_event_id_ignores_signatures_and_unsigned_and_redactable_content() -> None:
    event = _event()
    assert compute_event_id(event, V11) == compute_event_id(
        _event(signatures={"other.org": {"ed25519:x": "sig"}}, unsigned={"age": 1}), V11
    )
    assert compute_event_id(event, V11) == compute_event_id(_event(content={}), V11)


def test_every_room_version_has_an_event_id() -> None:
    for version in KNOWN_ROOM_VERSIONS.values():
        assert is_valid_event_id(compute_event_id(_event(event_id="$e:example.org"), version))


def _create_event(**content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "content": {"room_version": "12", **content},
        "prev_events": [],
        "auth_events": [],
        "depth": 1,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }


def test_v12_room_id_is_the_create_event_id_with_a_room_sigil() -> None:
    create = _create_event()
    room_id = room_id_for_create_event(create, V12)
    assert room_id == "!" + compute_event_id(create, V12)[1:]
    assert is_valid_room_id(room_id)
    assert ":" not in room_id


def test_v12_room_id_covers_the_whole_create_content() -> None:
    # v11+ redaction keeps all of m.room.create's content, so it changes the room ID.
    assert room_id_for_create_event(_create_event(), V12) != room_id_for_create_event(
        _create_event(additional_creators=["@bob:example.org"]), V12
    )


def test_room_id_from_create_event_only_for_v12_and_create_events() -> None:
    with pytest.raises(ValueError, match="does not derive"):
        room_id_for_create_event(_create_event(), V11)
    with pytest.raises(ValueError, match=r"m\.room\.create"):
        room_id_for_create_event(_event(), V12)
