"""The event format per room version: `validate_pdu` and `Event.from_pdu`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.canonical_json import encode_canonical_json
from federation.hashing import compute_event_id, room_id_for_create_event
from federation.pdu import MAX_PDU_SIZE, Event, InvalidPdu, validate_pdu
from federation.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V2,
    V3,
    V5,
    V6,
    V10,
    V11,
    V12,
    RoomVersion,
)

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())
HASH_ID = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"


def _ref(version: RoomVersion, event_id: str) -> Any:
    return [event_id, {"sha256": "aGFzaA"}] if version.has_event_id_field else event_id


def _pdu(version: RoomVersion, **overrides: Any) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "type": "m.room.message",
        "content": {"body": "hello", "msgtype": "m.text"},
        "prev_events": [_ref(version, "$prev:example.org")],
        "auth_events": [_ref(version, "$create:example.org")],
        "depth": 3,
        "hashes": {"sha256": "aGFzaA"},
        "signatures": {"example.org": {"ed25519:a": "c2ln"}},
        "unsigned": {"age": 4},
    }
    if version.has_event_id_field:
        pdu["event_id"] = "$event:example.org"
    pdu.update(overrides)
    return {k: v for k, v in pdu.items() if v is not _DROP}


_DROP: Any = object()


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.identifier)
def test_a_well_formed_event_is_valid_in_every_version(version: RoomVersion) -> None:
    validate_pdu(_pdu(version), version)


@pytest.mark.parametrize(
    "key",
    [
        "type",
        "sender",
        "content",
        "depth",
        "origin_server_ts",
        "prev_events",
        "auth_events",
        "hashes",
        "signatures",
        "room_id",
    ],
)
@pytest.mark.parametrize("version", [V1, V3, V11, V12], ids=lambda v: v.identifier)
def test_missing_required_keys_are_rejected(key: str, version: RoomVersion) -> None:
    with pytest.raises(InvalidPdu, match=key):
        validate_pdu(_pdu(version, **{key: _DROP}), version)


@pytest.mark.parametrize("version", [V1, V2], ids=lambda v: v.identifier)
def test_v1_and_v2_events_need_an_event_id(version: RoomVersion) -> None:
    with pytest.raises(InvalidPdu, match="event_id"):
        validate_pdu(_pdu(version, event_id=_DROP), version)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("type", 5),
        ("sender", ["@a:b"]),
        ("content", []),
        ("content", "text"),
        ("depth", "3"),
        ("depth", True),
        ("depth", 3.0),
        ("origin_server_ts", "now"),
        ("origin_server_ts", False),
        ("prev_events", {}),
        ("auth_events", "x"),
        ("hashes", []),
        ("signatures", None),
        ("room_id", 1),
        ("state_key", 1),
        ("state_key", None),
    ],
)
def test_wrongly_typed_keys_are_rejected(key: str, value: Any) -> None:
    with pytest.raises(InvalidPdu, match=key):
        validate_pdu(_pdu(V11, **{key: value}), V11)


def test_a_non_object_is_rejected() -> None:
    with pytest.raises(InvalidPdu, match="JSON object"):
        validate_pdu(["not", "an", "object"], V11)  # type: ignore[arg-type]


def test_missing_content_hash_is_rejected() -> None:
    with pytest.raises(InvalidPdu, match="sha256"):
        validate_pdu(_pdu(V11, hashes={}), V11)
    with pytest.raises(InvalidPdu, match="sha256"):
        validate_pdu(_pdu(V11, hashes={"sha256": 5}), V11)


def test_oversized_events_are_rejected() -> None:
    event = _pdu(V11)
    overhead = len(_canonical(event)) - len(event["content"]["body"])
    at_limit = _pdu(V11, content={"body": "x" * (MAX_PDU_SIZE - overhead), "msgtype": "m.text"})
    assert len(_canonical(at_limit)) == MAX_PDU_SIZE
    validate_pdu(at_limit, V11)
    over = _pdu(V11, content={"body": "x" * (MAX_PDU_SIZE - overhead + 1), "msgtype": "m.text"})
    with pytest.raises(InvalidPdu, match="65536"):
        validate_pdu(over, V11)


def _canonical(event: dict[str, Any]) -> bytes:
    return encode_canonical_json(event)


@pytest.mark.parametrize("key", ["type", "state_key"])
def test_type_and_state_key_are_limited_to_255_bytes(key: str) -> None:
    validate_pdu(_pdu(V11, **{key: "é" * 127}), V11)  # 254 bytes
    with pytest.raises(InvalidPdu, match="255 bytes"):
        validate_pdu(_pdu(V11, **{key: "é" * 128}), V11)  # 256 bytes


def test_sender_and_room_id_are_limited_to_255_bytes() -> None:
    long_sender = "@" + "a" * 243 + ":example.org"
    assert len(long_sender) == 256
    with pytest.raises(InvalidPdu, match="sender"):
        validate_pdu(_pdu(V11, sender=long_sender), V11)
    long_room = "!" + "a" * 243 + ":example.org"
    with pytest.raises(InvalidPdu, match="room_id"):
        validate_pdu(_pdu(V11, room_id=long_room), V11)


@pytest.mark.parametrize("room_id", ["room:example.org", "#a:b.org", "$e:example.org", ""])
def test_room_id_must_have_the_room_sigil(room_id: str) -> None:
    with pytest.raises(InvalidPdu, match="room_id"):
        validate_pdu(_pdu(V11, room_id=room_id), V11)


def test_historical_sender_ids_are_accepted_but_not_nonsense() -> None:
    validate_pdu(_pdu(V11, sender="@Old User!:example.org"), V11)
    with pytest.raises(InvalidPdu, match="sender"):
        validate_pdu(_pdu(V11, sender="alice"), V11)
    with pytest.raises(InvalidPdu, match="sender"):
        validate_pdu(_pdu(V11, sender="@alice:bad_server"), V11)


def test_prev_events_are_limited_to_20_and_auth_events_to_10() -> None:
    prev = [f"$p{i}:example.org" for i in range(21)]
    validate_pdu(_pdu(V11, prev_events=prev[:20]), V11)
    with pytest.raises(InvalidPdu, match="20 prev_events"):
        validate_pdu(_pdu(V11, prev_events=prev), V11)
    auth = [f"$a{i}:example.org" for i in range(11)]
    validate_pdu(_pdu(V11, auth_events=auth[:10]), V11)
    with pytest.raises(InvalidPdu, match="10 auth_events"):
        validate_pdu(_pdu(V11, auth_events=auth), V11)


@pytest.mark.parametrize(("depth", "valid"), [(0, True), (2**63 - 1, True), (-1, False)])
def test_depth_range(depth: int, valid: bool) -> None:
    if valid:
        validate_pdu(_pdu(V5, depth=depth), V5)
    else:
        with pytest.raises(InvalidPdu, match="depth"):
            validate_pdu(_pdu(V5, depth=depth), V5)


def test_depth_above_the_maximum_is_rejected_even_in_lenient_versions() -> None:
    with pytest.raises(InvalidPdu, match="depth"):
        validate_pdu(_pdu(V5, depth=2**63), V5)


def test_v1_references_are_id_and_hash_pairs() -> None:
    with pytest.raises(InvalidPdu, match="pairs"):
        validate_pdu(_pdu(V1, prev_events=["$p:example.org"]), V1)
    with pytest.raises(InvalidPdu, match="pairs"):
        validate_pdu(_pdu(V1, auth_events=[["$p:example.org"]]), V1)


def test_v3_and_later_references_are_plain_event_ids() -> None:
    validate_pdu(_pdu(V11, prev_events=[HASH_ID]), V11)
    with pytest.raises(InvalidPdu, match="event reference"):
        validate_pdu(_pdu(V3, prev_events=[["$p:example.org", {}]]), V3)
    with pytest.raises(InvalidPdu, match="event reference"):
        validate_pdu(_pdu(V11, auth_events=["not-an-id"]), V11)


def _create(version: RoomVersion, **overrides: Any) -> dict[str, Any]:
    return _pdu(
        version,
        type="m.room.create",
        state_key="",
        content={"room_version": version.identifier},
        prev_events=[],
        auth_events=[],
        depth=1,
        **overrides,
    )


def test_v12_create_event_must_not_have_a_room_id() -> None:
    with pytest.raises(InvalidPdu, match="room_id"):
        validate_pdu(_create(V12), V12)
    validate_pdu(_create(V12, room_id=_DROP), V12)


def test_create_events_before_v12_need_a_room_id() -> None:
    validate_pdu(_create(V11), V11)
    with pytest.raises(InvalidPdu, match="room_id"):
        validate_pdu(_create(V11, room_id=_DROP), V11)


def test_v12_create_event_gets_its_room_id_from_its_hash() -> None:
    create = _create(V12, room_id=_DROP)
    event = Event.from_pdu(create, V12)
    assert event.room_id == room_id_for_create_event(create, V12)
    assert event.event_id == compute_event_id(create, V12)
    assert event.room_id[1:] == event.event_id[1:]


def test_v12_non_create_events_still_need_a_room_id() -> None:
    with pytest.raises(InvalidPdu, match="room_id"):
        validate_pdu(_pdu(V12, room_id=_DROP), V12)


def test_redacts_is_top_level_before_v11_and_in_content_from_v11() -> None:
    old = _pdu(V10, type="m.room.redaction", redacts=HASH_ID, content={})
    assert Event.from_pdu(old, V10).redacts == HASH_ID
    new = _pdu(V11, type="m.room.redaction", content={"redacts": HASH_ID})
    assert Event.from_pdu(new, V11).redacts == HASH_ID
    # In v11 the top-level key is not where `redacts` lives.
    assert Event.from_pdu({**new, "content": {}, "redacts": HASH_ID}, V11).redacts is None


def test_redacts_must_be_an_event_id() -> None:
    with pytest.raises(InvalidPdu, match="redacts"):
        validate_pdu(_pdu(V11, type="m.room.redaction", content={"redacts": "nope"}), V11)
    with pytest.raises(InvalidPdu, match="redacts"):
        validate_pdu(_pdu(V10, type="m.room.redaction", redacts=5), V10)


@pytest.mark.parametrize(
    "content",
    [{"n": 1.5}, {"n": 1.0}, {"n": 2**53}, {"n": -(2**53)}, {"deep": {"n": [0.0]}}],
)
def test_strict_json_from_v6(content: dict[str, Any]) -> None:
    validate_pdu(_pdu(V5, content=content), V5)
    with pytest.raises(InvalidPdu):
        validate_pdu(_pdu(V6, content=content), V6)


@pytest.mark.parametrize("version", [V1, V11], ids=lambda v: v.identifier)
@pytest.mark.parametrize("content", [{"n": float("nan")}, {"s": "\ud800"}, {"b": b"x"}])
def test_values_that_are_never_json_are_rejected(
    version: RoomVersion, content: dict[str, Any]
) -> None:
    with pytest.raises(InvalidPdu):
        validate_pdu(_pdu(version, content=content), version)


def test_event_from_pdu_exposes_the_pdu_fields() -> None:
    pdu = _pdu(
        V11,
        type="m.room.member",
        state_key="@alice:example.org",
        content={"membership": "join"},
        prev_events=[HASH_ID],
        auth_events=["$a:example.org", "$b:example.org"],
    )
    event = Event.from_pdu(pdu, V11)
    assert event.event_id == compute_event_id(pdu, V11)
    assert event.room_version is V11
    assert event.room_id == "!room:example.org"
    assert event.sender == "@alice:example.org"
    assert event.sender_domain == "example.org"
    assert event.type == "m.room.member"
    assert event.state_key == "@alice:example.org"
    assert event.is_state
    assert event.state_tuple == ("m.room.member", "@alice:example.org")
    assert event.membership == "join"
    assert event.prev_event_ids == (HASH_ID,)
    assert event.auth_event_ids == ("$a:example.org", "$b:example.org")
    assert event.depth == 3
    assert event.origin_server_ts == 1_700_000_000_000
    assert event.redacts is None
    assert event.to_dict() == pdu


def test_v1_event_ids_come_from_the_pdu_and_references_from_the_pairs() -> None:
    event = Event.from_pdu(_pdu(V1), V1)
    assert event.event_id == "$event:example.org"
    assert event.prev_event_ids == ("$prev:example.org",)
    assert event.auth_event_ids == ("$create:example.org",)


def test_event_id_override_for_hand_built_graphs() -> None:
    event = Event.from_pdu(_pdu(V11), V11, event_id="$name:test")
    assert event.event_id == "$name:test"


def test_events_are_immutable_and_compare_by_event_id() -> None:
    pdu = _pdu(V11)
    event = Event.from_pdu(pdu, V11)
    with pytest.raises(TypeError):
        event.content["body"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        event.pdu["type"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.depth = 5  # type: ignore[misc]
    pdu["type"] = "m.changed"  # the caller's dict is not the event's
    assert event.type == "m.room.message"
    same = Event.from_pdu(_pdu(V11), V11)
    assert same == event and hash(same) == hash(event)
    assert Event.from_pdu(_pdu(V11, depth=9), V11) != event
    assert event.event_id in repr(event)


def test_message_events_have_no_state_tuple_or_membership() -> None:
    event = Event.from_pdu(_pdu(V11), V11)
    assert not event.is_state
    assert event.membership is None
    with pytest.raises(ValueError, match="not a state event"):
        _ = event.state_tuple


@pytest.mark.parametrize("version", [V1, V11], ids=lambda v: v.identifier)
def test_events_parsed_from_separate_json_share_their_repeated_strings(
    version: RoomVersion,
) -> None:
    # Two JSON texts decoded separately give equal but distinct strings; the events share them.
    text = encode_canonical_json(_pdu(version, state_key="@bob:example.org", origin="example.org"))
    first_pdu, second_pdu = json.loads(text), json.loads(text)
    assert first_pdu["room_id"] is not second_pdu["room_id"]
    first = Event.from_pdu(first_pdu, version, event_id="$one:example.org")
    second = Event.from_pdu(second_pdu, version, event_id="$two:example.org")
    assert first.room_id is second.room_id
    assert first.sender is second.sender
    assert first.type is second.type
    assert first.state_key is second.state_key
    assert first.pdu["origin"] is second.pdu["origin"]
    assert first.prev_event_ids[0] is second.prev_event_ids[0]
    assert first.auth_event_ids[0] is second.auth_event_ids[0]
    # The kept PDU is the same JSON value, and the caller's dict is left as it was.
    assert encode_canonical_json(first.to_dict()) == text
    assert first_pdu == json.loads(text)
