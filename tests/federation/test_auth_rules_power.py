"""Auth rules for m.room.power_levels (rule 10 of rooms/v12.md and its earlier forms): who may
change which level, integer-only levels from v10, string (v1–v9) and float (v1–v5) levels,
`notifications` from v6, and v12 room creators."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from federation.auth_rules import AuthError, check_auth_rules
from federation.pdu import Event
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.federation.builders import Room, standard_room

ALL = list(KNOWN_ROOM_VERSIONS.values())
STRINGY = [v for v in ALL if not v.integer_power_levels]
INTEGER_ONLY = [v for v in ALL if v.integer_power_levels]
FLOATY = [v for v in ALL if not v.strict_canonical_json]
V12 = [v for v in ALL if v.privileged_room_creators]

CREATOR = "@creator:test"
ADMIN = "@admin:test"
MOD = "@mod:test"
MOD2 = "@mod2:test"
ALICE = "@alice:test"
NEWCOMER = "@new:test"


def ids(versions: list[RoomVersion]) -> list[str]:
    return [f"v{v.identifier}" for v in versions]


LEVELS: dict[str, Any] = {
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
    "events_default": 0,
    "state_default": 50,
    "users_default": 0,
    "events": {"m.room.power_levels": 50, "m.room.tombstone": 100, "m.room.name": 50},
    "notifications": {"room": 50},
}


def moderated_room(room_version: RoomVersion, **kwargs: Any) -> Room:
    return standard_room(
        room_version,
        users={ADMIN: 100, MOD: 50, MOD2: 50, ALICE: 10},
        levels=LEVELS,
        members={ADMIN: "join", MOD: "join", MOD2: "join", ALICE: "join"},
        **kwargs,
    )


def power_levels_change(room: Room, sender: str, change: Callable[[dict[str, Any]], Any]) -> Event:
    content = copy.deepcopy(dict(room.state[("m.room.power_levels", "")].content))
    change(content)
    return room.build("m.room.power_levels", sender, content, state_key="")


def allowed(event: Event, room: Room) -> bool:
    try:
        check_auth_rules(event, room.auth_state())
    except AuthError:
        return False
    return True


def setter(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(content: dict[str, Any]) -> None:
        target = content
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return change


def remover(*path: str) -> Callable[[dict[str, Any]], None]:
    def change(content: dict[str, Any]) -> None:
        target = content
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def no_change(content: dict[str, Any]) -> None:
    pass


OK = (True, True)
# (case, sender, change, allowed up to v5, allowed from v6)
CHANGE_CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], bool, bool]] = [
    ("resend unchanged", MOD, no_change, True, True),
    ("raise own power", MOD, setter("users", MOD, value=51), False, False),
    ("lower own power", MOD, setter("users", MOD, value=10), True, True),
    ("remove own entry", MOD, remover("users", MOD), True, True),
    ("promote a user to own level", MOD, setter("users", ALICE, value=50), True, True),
    ("promote a user above own level", MOD, setter("users", ALICE, value=51), False, False),
    ("demote a lower user", MOD, setter("users", ALICE, value=0), True, True),
    ("remove a lower user", MOD, remover("users", ALICE), True, True),
    ("demote an equal", MOD, setter("users", MOD2, value=0), False, False),
    ("remove an equal", MOD, remover("users", MOD2), False, False),
    ("demote a higher user", MOD, setter("users", ADMIN, value=0), False, False),
    ("add a user at own level", MOD, setter("users", NEWCOMER, value=50), True, True),
    ("add a user above own level", MOD, setter("users", NEWCOMER, value=60), False, False),
    ("lower the ban level", MOD, setter("ban", value=40), True, True),
    ("raise the ban level above own", MOD, setter("ban", value=60), False, False),
    ("remove the ban level", MOD, remover("ban"), True, True),
    ("lower state_default", MOD, setter("state_default", value=0), True, True),
    ("raise users_default above own", MOD, setter("users_default", value=60), False, False),
    ("add invite at own level", MOD, setter("invite", value=50), True, True),
    ("lower a level above own", MOD, setter("events", "m.room.tombstone", value=50), False, False),
    ("remove a level above own", MOD, remover("events", "m.room.tombstone"), False, False),
    ("add an event level at own", MOD, setter("events", "m.room.topic", value=50), True, True),
    ("add an event level above", MOD, setter("events", "m.room.topic", value=75), False, False),
    ("raise an event level above", MOD, setter("events", "m.room.name", value=75), False, False),
    ("raise a notification level", MOD, setter("notifications", "room", value=100), True, False),
    ("add a notification level", MOD, setter("notifications", "x", value=100), True, False),
    ("remove a notification level", MOD, remover("notifications", "room"), True, True),
    ("user below the event level", ALICE, setter("users", ALICE, value=10), False, False),
    ("admin sets a level to own", ADMIN, setter("events", "m.room.tombstone", value=100), *OK),
    ("admin promotes above own", ADMIN, setter("users", MOD, value=101), False, False),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("case", "sender", "change", "ok_v1", "ok_v6"), CHANGE_CASES, ids=[c[0] for c in CHANGE_CASES]
)
def test_power_level_changes(
    room_version: RoomVersion,
    case: str,
    sender: str,
    change: Callable[[dict[str, Any]], None],
    ok_v1: bool,
    ok_v6: bool,
) -> None:
    room = moderated_room(room_version)
    expected = ok_v6 if room_version.limit_notifications_power_levels else ok_v1
    assert allowed(power_levels_change(room, sender, change), room) is expected


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_lowered_level_is_checked_against_its_current_value(room_version: RoomVersion) -> None:
    # ban is 70 now; a moderator at 50 may neither lower nor remove it
    room = moderated_room(room_version)
    room.add("m.room.power_levels", ADMIN, {**room.state[("m.room.power_levels", "")].content,
             "ban": 70}, state_key="", checked=True)  # fmt: skip
    assert not allowed(power_levels_change(room, MOD, setter("ban", value=10)), room)
    assert not allowed(power_levels_change(room, MOD, remover("ban")), room)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_the_first_power_levels_event_is_not_compared(room_version: RoomVersion) -> None:
    room = Room(room_version, CREATOR)
    room.member(CREATOR, "join", checked=True)
    content = {"users": {ALICE: 1000}, "ban": 1000, "events": {"m.room.name": 1000}}
    assert allowed(room.build("m.room.power_levels", CREATOR, content, state_key=""), room)
    # … but it still needs the required level, and a valid content
    assert not allowed(room.build("m.room.power_levels", ALICE, content, state_key=""), room)
    bad = {"users": {"alice": 10}}
    assert not allowed(room.build("m.room.power_levels", CREATOR, bad, state_key=""), room)


# --- content validation ----------------------------------------------------------------------

CONTENT_CASES: list[tuple[str, dict[str, Any], bool, bool]] = [
    # (case, content change, allowed v1–v9, allowed v10+)
    ("string user level", {"users": {ALICE: "20"}}, True, False),
    ("padded signed string level", {"users": {ALICE: " +020 "}}, True, False),
    ("negative string level", {"users": {ALICE: "-5"}}, True, False),
    ("string named level", {"ban": "50"}, True, False),
    ("string event level", {"events": {"m.room.name": "50"}}, True, False),
    ("string notification level", {"notifications": {"room": "50"}}, True, False),
    ("decimal string", {"users": {ALICE: "1.5"}}, False, False),
    ("word string", {"users": {ALICE: "ten"}}, False, False),
    ("empty string", {"users": {ALICE: ""}}, False, False),
    ("underscored string", {"users": {ALICE: "1_0"}}, False, False),
    ("non-ASCII digits", {"users": {ALICE: "٢٠"}}, False, False),
    ("two signs", {"users": {ALICE: "+-5"}}, False, False),
    ("boolean level", {"users": {ALICE: True}}, False, False),
    ("null level", {"users": {ALICE: None}}, False, False),
    ("boolean named level", {"kick": False}, False, False),
    ("object level", {"ban": {}}, False, False),
    ("bad named string", {"redact": "lots"}, False, False),
    ("bad event level", {"events": {"m.room.name": "lots"}}, False, False),
    ("events not an object", {"events": "50"}, False, False),
    ("notifications not an object", {"notifications": ["room"]}, False, False),
    ("users not an object", {"users": [ALICE]}, False, False),
    ("users key not a user ID", {"users": {"alice": 10}}, False, False),
    ("users key without a server", {"users": {"@alice": 10}}, False, False),
    ("historical user ID key", {"users": {"@Alice:test": 10}}, True, True),
    ("integers everywhere", {"users": {ALICE: 20}, "ban": 50}, True, True),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("case", "update", "ok_stringy", "ok_integer"),
    CONTENT_CASES,
    ids=[c[0] for c in CONTENT_CASES],
)
def test_power_level_values_by_room_version(
    room_version: RoomVersion,
    case: str,
    update: dict[str, Any],
    ok_stringy: bool,
    ok_integer: bool,
) -> None:
    room = moderated_room(room_version)

    def change(content: dict[str, Any]) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(content.get(key), dict):
                content[key] = {**content[key], **value}
            else:
                content[key] = value

    expected = ok_integer if room_version.integer_power_levels else ok_stringy
    assert allowed(power_levels_change(room, ADMIN, change), room) is expected


@pytest.mark.parametrize("room_version", STRINGY, ids=ids(STRINGY))
def test_string_levels_compare_by_value(room_version: RoomVersion) -> None:
    room = moderated_room(room_version)
    # An equal's 50 rewritten as "050" is no change, so a moderator at 50 may send it …
    assert allowed(power_levels_change(room, MOD, setter("users", MOD2, value="050")), room)
    room.add("m.room.power_levels", ADMIN, {**room.state[("m.room.power_levels", "")].content,
             "users": {CREATOR: "100", ADMIN: "100", MOD: " 50", MOD2: "50", ALICE: "10"}},
             state_key="", checked=True)  # fmt: skip
    # … and a string level in state is the number it holds
    assert not allowed(power_levels_change(room, MOD, setter("users", MOD2, value=0)), room)
    assert allowed(power_levels_change(room, MOD, setter("users", ALICE, value=0)), room)


@pytest.mark.parametrize("room_version", FLOATY, ids=ids(FLOATY))
def test_float_levels_are_truncated_in_v1_to_v5(room_version: RoomVersion) -> None:
    room = moderated_room(room_version)
    assert allowed(power_levels_change(room, MOD, setter("users", ALICE, value=50.9)), room)
    assert not allowed(power_levels_change(room, MOD, setter("users", ALICE, value=51.0)), room)


# --- v12: room creators ------------------------------------------------------------------------


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
@pytest.mark.parametrize("listed", [CREATOR, "@cocreator:test"])
def test_v12_creators_may_not_be_listed_in_users(room_version: RoomVersion, listed: str) -> None:
    room = moderated_room(room_version, create_content={"additional_creators": ["@cocreator:test"]})
    for sender in (CREATOR, ADMIN):
        event = power_levels_change(room, sender, setter("users", listed, value=100))
        assert not allowed(event, room)


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
def test_v12_the_first_power_levels_may_not_list_the_creator(room_version: RoomVersion) -> None:
    room = Room(room_version, CREATOR)
    room.member(CREATOR, "join", checked=True)
    listed = {"users": {CREATOR: 100}}
    assert not allowed(room.build("m.room.power_levels", CREATOR, listed, state_key=""), room)
    assert allowed(room.build("m.room.power_levels", CREATOR, {"users": {}}, state_key=""), room)


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
def test_v12_creators_may_set_any_level(room_version: RoomVersion) -> None:
    room = moderated_room(room_version)
    for change in (
        setter("users", ADMIN, value=10**9),
        setter("users_default", value=10**6),
        setter("events", "m.room.tombstone", value=10**9),
    ):
        assert allowed(power_levels_change(room, CREATOR, change), room)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_the_creator_is_bound_by_their_level_before_v12(room_version: RoomVersion) -> None:
    room = moderated_room(room_version)
    event = power_levels_change(room, CREATOR, setter("users", ADMIN, value=101))
    assert allowed(event, room) is room_version.privileged_room_creators


@pytest.mark.parametrize("room_version", INTEGER_ONLY, ids=ids(INTEGER_ONLY))
@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"ban": "50"}, "ban must be an integer"),
        ({"events": {"m.room.name": "50"}}, "events must be an object of integer"),
        ({"notifications": "room"}, "notifications must be an object of integer"),
    ],
)
def test_v10_names_the_level_that_is_not_an_integer(
    room_version: RoomVersion, update: dict[str, Any], reason: str
) -> None:
    room = moderated_room(room_version)
    event = power_levels_change(room, ADMIN, lambda content: content.update(update))
    with pytest.raises(AuthError, match=reason):
        check_auth_rules(event, room.auth_state())
