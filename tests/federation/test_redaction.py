"""The redaction algorithm per rule set (v1, v6, v9, v11), against hand-written expectations
from `rooms/fragments/v*-redactions.md`."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.hashing import compute_event_id, compute_reference_hash
from federation.redaction import redact
from federation.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    V11,
    V12,
    RoomVersion,
)

PRE_V6 = [V1, V2, V3, V4, V5]
V6_TO_V8 = [V6, V7, V8]
V9_TO_V10 = [V9, V10]
V11_ON = [V11, V12]

# Every top-level key the rules mention, plus some they do not.
FULL_EVENT: dict[str, Any] = {
    "event_id": "$e:example.org",
    "type": "m.room.message",
    "room_id": "!r:example.org",
    "sender": "@alice:example.org",
    "state_key": "",
    "content": {"body": "secret"},
    "hashes": {"sha256": "aGFzaA"},
    "signatures": {"example.org": {"ed25519:a": "c2ln"}},
    "depth": 7,
    "prev_events": ["$p:example.org"],
    "prev_state": [],
    "auth_events": ["$a:example.org"],
    "origin": "example.org",
    "origin_server_ts": 1234,
    "membership": "join",
    "unsigned": {"age": 5},
    "redacts": "$x:example.org",
    "age_ts": 1000,
    "custom": {"anything": True},
}
ESSENTIAL_V1 = {
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "prev_state",
    "auth_events",
    "origin",
    "origin_server_ts",
    "membership",
}
ESSENTIAL_V11 = ESSENTIAL_V1 - {"origin", "membership", "prev_state"}


@pytest.mark.parametrize("version", PRE_V6 + V6_TO_V8 + V9_TO_V10)
def test_top_level_keys_kept_before_v11(version: RoomVersion) -> None:
    redacted = redact(FULL_EVENT, version)
    assert set(redacted) == ESSENTIAL_V1
    assert redacted["content"] == {}
    assert {k: v for k, v in redacted.items() if k != "content"} == {
        k: FULL_EVENT[k] for k in ESSENTIAL_V1 - {"content"}
    }


@pytest.mark.parametrize("version", V11_ON)
def test_top_level_keys_kept_from_v11(version: RoomVersion) -> None:
    redacted = redact(FULL_EVENT, version)
    assert set(redacted) == ESSENTIAL_V11
    for dropped in ("origin", "membership", "prev_state", "unsigned", "redacts", "age_ts"):
        assert dropped not in redacted


def _content_after(version: RoomVersion, event_type: str, content: dict[str, Any]) -> Any:
    return redact({"type": event_type, "content": content}, version)["content"]


MEMBER = {
    "membership": "join",
    "displayname": "Alice",
    "avatar_url": "mxc://x/y",
    "join_authorised_via_users_server": "@bob:example.org",
    "third_party_invite": {"display_name": "a@b.c", "signed": {"token": "t", "mxid": "@a:b"}},
    "reason": "hi",
}
CREATE = {"creator": "@alice:example.org", "room_version": "1", "m.federate": False, "x": 1}
JOIN_RULES = {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1}
POWER_LEVELS = {
    "ban": 50,
    "events": {"m.room.name": 50},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@alice:example.org": 100},
    "users_default": 0,
    "notifications": {"room": 50},
    "x": 1,
}
ALIASES = {"aliases": ["#a:example.org"], "x": 1}
HISTORY = {"history_visibility": "shared", "x": 1}
REDACTION = {"redacts": "$x:example.org", "reason": "spam"}
PL_KEPT_V1 = {k: v for k, v in POWER_LEVELS.items() if k not in ("invite", "notifications", "x")}

# (event type, content, expected content per rule set v1 / v6 / v9 / v11)
CONTENT_CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    (
        "m.room.member",
        MEMBER,
        [
            {"membership": "join"},
            {"membership": "join"},
            {"membership": "join", "join_authorised_via_users_server": "@bob:example.org"},
            {
                "membership": "join",
                "join_authorised_via_users_server": "@bob:example.org",
                "third_party_invite": {"signed": {"token": "t", "mxid": "@a:b"}},
            },
        ],
    ),
    (
        "m.room.create",
        CREATE,
        [{"creator": "@alice:example.org"}] * 3 + [CREATE],
    ),
    (
        "m.room.join_rules",
        JOIN_RULES,
        [{"join_rule": "restricted"}] * 2
        + [{"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]}] * 2,
    ),
    (
        "m.room.power_levels",
        POWER_LEVELS,
        [PL_KEPT_V1] * 3 + [{**PL_KEPT_V1, "invite": 0}],
    ),
    ("m.room.aliases", ALIASES, [{"aliases": ["#a:example.org"]}, {}, {}, {}]),
    ("m.room.history_visibility", HISTORY, [{"history_visibility": "shared"}] * 4),
    ("m.room.redaction", REDACTION, [{}, {}, {}, {"redacts": "$x:example.org"}]),
    ("m.room.message", {"body": "hi", "msgtype": "m.text"}, [{}] * 4),
    ("m.room.name", {"name": "Room"}, [{}] * 4),
    ("m.room.topic", {"topic": "t"}, [{}] * 4),
    ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}, [{}] * 4),
    ("com.example.custom", {"membership": "join", "creator": "x"}, [{}] * 4),
]
RULE_SET_VERSIONS = [PRE_V6, V6_TO_V8, V9_TO_V10, V11_ON]


@pytest.mark.parametrize(
    ("event_type", "content", "expected"),
    CONTENT_CASES,
    ids=[case[0] for case in CONTENT_CASES],
)
def test_content_kept_per_event_type_and_rule_set(
    event_type: str, content: dict[str, Any], expected: list[Any]
) -> None:
    for versions, expected_content in zip(RULE_SET_VERSIONS, expected, strict=True):
        for version in versions:
            assert _content_after(version, event_type, content) == expected_content, (
                f"{event_type} in v{version.identifier}"
            )


def test_v11_third_party_invite_without_signed_is_dropped() -> None:
    content = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
    assert _content_after(V11, "m.room.member", content) == {"membership": "invite"}
    content = {"membership": "invite", "third_party_invite": "not an object"}
    assert _content_after(V11, "m.room.member", content) == {"membership": "invite"}


def test_pre_v11_member_drops_third_party_invite() -> None:
    assert _content_after(V10, "m.room.member", MEMBER) == {
        "membership": "join",
        "join_authorised_via_users_server": "@bob:example.org",
    }


def test_v1_to_v10_redaction_events_lose_redacts() -> None:
    # Before v11 `redacts` is a top-level key the algorithm does not keep.
    event = {"type": "m.room.redaction", "redacts": "$x:example.org", "content": {"reason": "r"}}
    for version in PRE_V6 + V6_TO_V8 + V9_TO_V10:
        assert redact(event, version) == {"type": "m.room.redaction", "content": {}}


def test_content_that_is_not_an_object_becomes_empty() -> None:
    assert redact({"type": "m.room.member", "content": "junk"}, V11) == {
        "type": "m.room.member",
        "content": {},
    }
    assert redact({"type": "m.room.member"}, V1) == {"type": "m.room.member", "content": {}}
    assert redact({"type": 5, "content": {"membership": "join"}}, V1) == {
        "type": 5,
        "content": {},
    }


def test_redact_never_mutates_its_input() -> None:
    for version in KNOWN_ROOM_VERSIONS.values():
        for event_type, content, _ in CONTENT_CASES:
            event = {**FULL_EVENT, "type": event_type, "content": copy.deepcopy(content)}
            before = copy.deepcopy(event)
            redacted = redact(event, version)
            assert event == before
            # The result shares no mutable objects with the input.
            for value in redacted["content"].values():
                if isinstance(value, dict):
                    value["mutated"] = True
            redacted["signatures"]["x"] = {}
            redacted["content"]["new"] = 1
            assert event == before


def test_redact_accepts_read_only_mappings() -> None:
    event = MappingProxyType(
        {"type": "m.room.create", "content": MappingProxyType({"creator": "@a:b", "x": 1})}
    )
    assert redact(event, V11) == {"type": "m.room.create", "content": {"creator": "@a:b", "x": 1}}
    assert redact(event, V1) == {"type": "m.room.create", "content": {"creator": "@a:b"}}


# Property tests: any event, any version.
_types = st.sampled_from(
    [case[0] for case in CONTENT_CASES] + ["m.room.third_party_invite", "m.reaction"]
)
_keys = st.sampled_from(
    sorted({k for case in CONTENT_CASES for k in case[1]} | {"signed", "other", "body"})
)
_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5)
_values = st.recursive(
    _leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=3),
    max_leaves=10,
)
_events = st.fixed_dictionaries(
    {
        "type": _types,
        "content": st.dictionaries(_keys, _values, max_size=6),
        "room_id": st.just("!r:example.org"),
        "sender": st.just("@alice:example.org"),
        "depth": st.integers(0, 100),
        "prev_events": st.just([]),
        "auth_events": st.just([]),
        "origin_server_ts": st.integers(0, 2**40),
        "hashes": st.just({"sha256": "aGFzaA"}),
        "signatures": st.just({}),
        "event_id": st.just("$e:example.org"),
    },
    optional={
        "state_key": st.text(max_size=5),
        "unsigned": st.dictionaries(st.text(max_size=3), _leaf, max_size=2),
        "origin": st.just("example.org"),
        "membership": st.just("join"),
        "redacts": st.just("$x:example.org"),
        "junk": _values,
    },
)
_versions = st.sampled_from(list(KNOWN_ROOM_VERSIONS.values()))


@given(_events, _versions)
def test_redaction_is_idempotent(event: dict[str, Any], version: RoomVersion) -> None:
    once = redact(event, version)
    assert redact(once, version) == once


@given(_events, _versions)
def test_redaction_keeps_the_event_id(event: dict[str, Any], version: RoomVersion) -> None:
    redacted = redact(event, version)
    assert compute_reference_hash(redacted, version) == compute_reference_hash(event, version)
    assert compute_event_id(redacted, version) == compute_event_id(event, version)


@given(_events, _versions)
def test_redaction_only_removes(event: dict[str, Any], version: RoomVersion) -> None:
    redacted = redact(event, version)
    assert set(redacted) - {"content"} <= set(event)
    for key in set(redacted) - {"content"}:
        assert redacted[key] == event[key]
    if event["type"] != "m.room.member":  # v11 narrows third_party_invite to `signed`
        for key, value in redacted["content"].items():
            assert event["content"][key] == value
