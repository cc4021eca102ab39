"""EDUs: typed parsing of the spec's EDU types and the "users of the sending server" rule."""

from __future__ import annotations

from typing import Any

import pytest

from federation.edus import (
    DeviceListUpdateEdu,
    DirectToDeviceEdu,
    PresenceEdu,
    PresenceUpdate,
    Receipt,
    ReceiptEdu,
    SigningKeyUpdateEdu,
    TypingEdu,
    build_edu,
    edu_user_belongs_to_origin,
    parse_edu,
    restrict_edu_to_origin,
)
from federation.wire import WireFormatError

ALICE = "@alice:a.org"
BOB = "@bob:b.org"


def edu(edu_type: str, content: Any) -> dict[str, Any]:
    return {"edu_type": edu_type, "content": content}


@pytest.mark.parametrize(
    ("user_id", "origin", "belongs"),
    [
        (ALICE, "a.org", True),
        (ALICE, "b.org", False),
        ("@alice:a.org:8448", "a.org:8448", True),
        ("@alice:a.org:8448", "a.org", False),
        ("@alice:a.org", "a.org:8448", False),
        ("@alice:A.org", "a.org", False),
        ("alice:a.org", "a.org", False),
        ("@alice", "a.org", False),
        ("", "a.org", False),
    ],
)
def test_edu_user_belongs_to_origin(user_id: str, origin: str, belongs: bool) -> None:
    assert edu_user_belongs_to_origin(user_id, origin) is belongs


def test_typing() -> None:
    parsed = parse_edu(edu("m.typing", {"room_id": "!r:a.org", "user_id": ALICE, "typing": True}))
    assert parsed == TypingEdu(room_id="!r:a.org", user_id=ALICE, typing=True)


@pytest.mark.parametrize(
    "content",
    [
        {"user_id": ALICE, "typing": True},
        {"room_id": "!r:a.org", "user_id": ALICE, "typing": "yes"},
        {"room_id": "!r:a.org", "user_id": 3, "typing": False},
        "typing",
    ],
)
def test_malformed_typing_is_rejected(content: Any) -> None:
    with pytest.raises(WireFormatError):
        parse_edu(edu("m.typing", content))


def test_receipts_are_flattened_per_room_and_user() -> None:
    content = {
        "!r1:a.org": {
            "m.read": {
                ALICE: {"event_ids": ["$e1"], "data": {"ts": 10}},
                "@carol:a.org": {"event_ids": ["$e2"], "data": {"ts": 11, "thread_id": "main"}},
            }
        },
        "!r2:a.org": {"m.read": {ALICE: {"event_ids": ["$e3"], "data": {"ts": 12}}}},
        "!r3:a.org": {"m.read.private": {ALICE: {"event_ids": ["$e4"], "data": {"ts": 13}}}},
    }
    parsed = parse_edu(edu("m.receipt", content))
    assert parsed == ReceiptEdu(
        receipts=(
            Receipt("!r1:a.org", "m.read", ALICE, ("$e1",), 10, None),
            Receipt("!r1:a.org", "m.read", "@carol:a.org", ("$e2",), 11, "main"),
            Receipt("!r2:a.org", "m.read", ALICE, ("$e3",), 12, None),
        )
    )


@pytest.mark.parametrize(
    "content",
    [
        {"!r:a.org": "x"},
        {"!r:a.org": {"m.read": []}},
        {"!r:a.org": {"m.read": {ALICE: {"event_ids": [], "data": {"ts": 1}}}}},
        {"!r:a.org": {"m.read": {ALICE: {"event_ids": "$e", "data": {"ts": 1}}}}},
        {"!r:a.org": {"m.read": {ALICE: {"event_ids": [1], "data": {"ts": 1}}}}},
        {"!r:a.org": {"m.read": {ALICE: {"event_ids": ["$e"]}}}},
        {"!r:a.org": {"m.read": {ALICE: {"event_ids": ["$e"], "data": {"ts": "1"}}}}},
        {"!r:a.org": {"m.read": {ALICE: {"event_ids": ["$e"], "data": {"ts": 1, "thread_id": 2}}}}},
    ],
)
def test_malformed_receipts_are_rejected(content: Any) -> None:
    with pytest.raises(WireFormatError):
        parse_edu(edu("m.receipt", content))


def test_presence() -> None:
    content = {
        "push": [
            {
                "user_id": ALICE,
                "presence": "online",
                "last_active_ago": 5,
                "currently_active": True,
            },
            {
                "user_id": "@c:a.org",
                "presence": "offline",
                "last_active_ago": 0,
                "status_msg": "zz",
            },
        ]
    }
    assert parse_edu(edu("m.presence", content)) == PresenceEdu(
        push=(
            PresenceUpdate(ALICE, "online", 5, None, True),
            PresenceUpdate("@c:a.org", "offline", 0, "zz", False),
        )
    )


def test_presence_without_last_active_ago_is_accepted() -> None:
    # Synapse leaves last_active_ago out for users who were never active.
    content = {"push": [{"user_id": ALICE, "presence": "offline"}]}
    assert parse_edu(edu("m.presence", content)) == PresenceEdu(
        push=(PresenceUpdate(ALICE, "offline", None, None, False),)
    )


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"push": {}},
        {"push": [{"user_id": ALICE, "presence": "busy", "last_active_ago": 1}]},
        {"push": [{"user_id": ALICE, "presence": "online", "last_active_ago": "1"}]},
        {"push": [{"presence": "online", "last_active_ago": 1}]},
        {"push": [{"user_id": ALICE, "presence": "online", "last_active_ago": 1, "status_msg": 1}]},
    ],
)
def test_malformed_presence_is_rejected(content: Any) -> None:
    with pytest.raises(WireFormatError):
        parse_edu(edu("m.presence", content))


def test_direct_to_device() -> None:
    messages = {BOB: {"DEVICE": {"algorithm": "m.olm"}, "*": {"x": 1}}}
    content = {"sender": ALICE, "type": "m.room_key", "message_id": "m1", "messages": messages}
    assert parse_edu(edu("m.direct_to_device", content)) == DirectToDeviceEdu(
        sender=ALICE, type="m.room_key", message_id="m1", messages=messages
    )
    with pytest.raises(WireFormatError):
        parse_edu(edu("m.direct_to_device", {**content, "messages": {BOB: {"D": "text"}}}))
    with pytest.raises(WireFormatError):
        parse_edu(edu("m.direct_to_device", {**content, "message_id": None}))


def test_device_list_update() -> None:
    content = {
        "user_id": ALICE,
        "device_id": "DEV",
        "stream_id": 6,
        "prev_id": [5],
        "device_display_name": "Phone",
        "keys": {"user_id": ALICE},
    }
    assert parse_edu(edu("m.device_list_update", content)) == DeviceListUpdateEdu(
        ALICE, "DEV", 6, (5,), False, "Phone", {"user_id": ALICE}
    )
    minimal = parse_edu(
        edu("m.device_list_update", {"user_id": ALICE, "device_id": "D", "stream_id": 1})
    )
    assert minimal == DeviceListUpdateEdu(ALICE, "D", 1, (), False, None, None)
    for bad in ({"prev_id": [True]}, {"deleted": "no"}, {"stream_id": "6"}, {"keys": []}):
        with pytest.raises(WireFormatError):
            parse_edu(edu("m.device_list_update", {**content, **bad}))


def test_signing_key_update() -> None:
    master = {"user_id": ALICE, "usage": ["master"], "keys": {}}
    parsed = parse_edu(edu("m.signing_key_update", {"user_id": ALICE, "master_key": master}))
    assert parsed == SigningKeyUpdateEdu(ALICE, master, None)
    with pytest.raises(WireFormatError):
        parse_edu(edu("m.signing_key_update", {"user_id": ALICE, "self_signing_key": "k"}))


def test_unknown_edu_types_are_ignored() -> None:
    assert parse_edu(edu("org.example.custom", {"anything": 1})) is None
    assert parse_edu(edu("org.example.custom", "not even an object")) is None


@pytest.mark.parametrize("bad", [None, [], {"content": {}}, {"edu_type": 5, "content": {}}])
def test_malformed_edu_envelope_is_rejected(bad: Any) -> None:
    with pytest.raises(WireFormatError):
        parse_edu(bad)


def test_single_user_edus_from_another_server_are_dropped() -> None:
    typing = TypingEdu("!r:a.org", ALICE, True)
    assert restrict_edu_to_origin(typing, "a.org") == typing
    assert restrict_edu_to_origin(typing, "b.org") is None
    to_device = DirectToDeviceEdu(ALICE, "t", "m", {})
    assert restrict_edu_to_origin(to_device, "b.org") is None
    devices = DeviceListUpdateEdu(ALICE, "D", 1, (), False, None, None)
    assert restrict_edu_to_origin(devices, "b.org") is None
    assert restrict_edu_to_origin(SigningKeyUpdateEdu(ALICE, None, None), "b.org") is None


def test_multi_user_edus_keep_only_the_origins_users() -> None:
    receipts = ReceiptEdu(
        (
            Receipt("!r:a.org", "m.read", ALICE, ("$e",), 1, None),
            Receipt("!r:a.org", "m.read", BOB, ("$e",), 1, None),
        )
    )
    restricted = restrict_edu_to_origin(receipts, "b.org")
    assert isinstance(restricted, ReceiptEdu)
    assert [r.user_id for r in restricted.receipts] == [BOB]
    presence = PresenceEdu(
        (
            PresenceUpdate(ALICE, "online", 1, None, False),
            PresenceUpdate(BOB, "online", 1, None, False),
        )
    )
    assert restrict_edu_to_origin(presence, "a.org") == PresenceEdu((presence.push[0],))
    assert restrict_edu_to_origin(presence, "c.org") is None


def test_build_edu() -> None:
    content = {"room_id": "!r:a.org", "user_id": ALICE, "typing": False}
    assert parse_edu(build_edu("m.typing", content)) == TypingEdu("!r:a.org", ALICE, False)
