"""The room-state helpers the auth rules (and the server) read state with: power levels and
their parsing per room version, membership, join rule, history visibility, room creators."""

from __future__ import annotations

import math
from typing import Any

import pytest

from federation.room_state import (
    INFINITE_POWER,
    InvalidPowerLevel,
    get_power_levels_content,
    history_visibility,
    join_rule,
    membership_of,
    named_power_level,
    parse_power_level,
    required_power_level,
    room_creators,
    user_power_level,
)
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.federation.builders import Room, standard_room

ALL = list(KNOWN_ROOM_VERSIONS.values())
V = KNOWN_ROOM_VERSIONS
CREATOR = "@creator:test"
ALICE = "@alice:test"


def ids(versions: list[RoomVersion]) -> list[str]:
    return [f"v{v.identifier}" for v in versions]


# (value, parsed in v1–v5, v6–v9, v10+); None means invalid
PARSE_CASES: list[tuple[Any, int | None, int | None, int | None]] = [
    (50, 50, 50, 50),
    (-3, -3, -3, -3),
    (0, 0, 0, 0),
    ("50", 50, 50, None),
    ("00100", 100, 100, None),
    (" +100 ", 100, 100, None),
    ("\t-7\n", -7, -7, None),
    ("+-1", None, None, None),
    ("1.0", None, None, None),
    ("1e3", None, None, None),
    ("", None, None, None),
    ("   ", None, None, None),
    ("1 0", None, None, None),
    ("1_000", None, None, None),
    ("٣", None, None, None),
    (50.9, 50, None, None),
    (-50.9, -50, None, None),
    (5.114698e4, 51146, None, None),
    (math.inf, None, None, None),
    (math.nan, None, None, None),
    (True, None, None, None),
    (None, None, None, None),
    ([50], None, None, None),
    ({"level": 50}, None, None, None),
]


@pytest.mark.parametrize(("value", "v1", "v6", "v10"), PARSE_CASES, ids=repr)
def test_parse_power_level_per_room_version(
    value: Any, v1: int | None, v6: int | None, v10: int | None
) -> None:
    for identifiers, expected in (("12345", v1), ("6789", v6), (("10", "11", "12"), v10)):
        for identifier in identifiers:
            room_version = V[identifier]
            if expected is None:
                with pytest.raises(InvalidPowerLevel):
                    parse_power_level(value, room_version)
            else:
                assert parse_power_level(value, room_version) == expected


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_levels_without_a_power_levels_event(room_version: RoomVersion) -> None:
    room = Room(room_version, CREATOR)
    state = room.auth_state()
    assert get_power_levels_content(state) is None
    creator_level = INFINITE_POWER if room_version.privileged_room_creators else 100
    assert user_power_level(state, CREATOR) == creator_level
    assert user_power_level(state, ALICE) == 0
    assert required_power_level(state, "m.room.topic", is_state=True) == 50
    assert required_power_level(state, "m.room.message", is_state=False) == 0
    assert [named_power_level(state, n) for n in ("invite", "kick", "ban", "redact")] == [
        0, 50, 50, 50,
    ]  # fmt: skip


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_levels_from_the_power_levels_event(room_version: RoomVersion) -> None:
    room = standard_room(
        room_version,
        users={ALICE: 7},
        levels={
            "users_default": 3, "state_default": 20, "events_default": 10, "kick": 30,
            "events": {"m.room.topic": 5, "m.custom": 60},
        },
    )  # fmt: skip
    state = room.auth_state()
    assert user_power_level(state, ALICE) == 7
    assert user_power_level(state, "@someone:test") == 3
    assert required_power_level(state, "m.room.topic", is_state=True) == 5
    assert required_power_level(state, "m.custom", is_state=False) == 60
    assert required_power_level(state, "m.room.name", is_state=True) == 20
    assert required_power_level(state, "m.room.message", is_state=False) == 10
    assert named_power_level(state, "kick") == 30
    assert named_power_level(state, "ban") == 50


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_v12_creators_have_infinite_power_whatever_the_power_levels(
    room_version: RoomVersion,
) -> None:
    room = standard_room(room_version, create_content={"additional_creators": [ALICE]})
    state = room.auth_state()
    if room_version.privileged_room_creators:
        assert user_power_level(state, CREATOR) == math.inf
        assert user_power_level(state, ALICE) == math.inf
        assert user_power_level(state, ALICE) > 2**53
    else:
        assert user_power_level(state, CREATOR) == 100
        assert user_power_level(state, ALICE) == 0


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_room_creators_per_version(room_version: RoomVersion) -> None:
    room = Room(
        room_version,
        CREATOR,
        create_content={"creator": "@named:test", "additional_creators": [ALICE, 5]},
    )
    if room_version.privileged_room_creators:
        expected = {CREATOR, ALICE}
    elif room_version.implicit_room_creator:
        expected = {CREATOR}
    else:
        expected = {"@named:test"}
    assert room_creators(room.auth_state()) == expected
    assert room_creators({}) == frozenset()


def test_a_stored_power_levels_event_with_bad_values_reads_with_defaults() -> None:
    # Only reachable if such an event got into state unchecked; reading must not crash.
    room = standard_room(V["5"])
    bad = {"ban": "lots", "kick": 20, "users": {ALICE: "x", "@bob:test": "9"}, "events": "no"}
    room.add("m.room.power_levels", CREATOR, bad, state_key="")
    state = room.auth_state()
    assert named_power_level(state, "ban") == 50
    assert named_power_level(state, "kick") == 20
    assert user_power_level(state, ALICE) == 0
    assert user_power_level(state, "@bob:test") == 9
    assert required_power_level(state, "m.room.name", is_state=True) == 50


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_membership_join_rule_and_history_visibility(room_version: RoomVersion) -> None:
    room = Room(room_version, CREATOR)
    assert membership_of(room.auth_state(), CREATOR) == "leave"
    assert join_rule(room.auth_state()) == "invite"
    assert history_visibility(room.auth_state()) == "shared"
    room.member(CREATOR, "join")
    room.add("m.room.join_rules", CREATOR, {"join_rule": "public"}, state_key="")
    room.add("m.room.history_visibility", CREATOR, {"history_visibility": "joined"}, state_key="")
    room.add("m.room.member", ALICE, {"membership": ["join"]}, state_key=ALICE)
    state = room.auth_state()
    assert membership_of(state, CREATOR) == "join"
    assert membership_of(state, ALICE) == "leave"  # malformed membership reads as none
    assert join_rule(state) == "public"
    assert history_visibility(state) == "joined"
