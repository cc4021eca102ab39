"""Auth rules: the create event, auth event selection and the listed auth events, the room of
the create event, m.federate, and the rules for events other than membership and power levels.

Every table runs across the room versions it concerns, chosen by `RoomVersion` flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from federation.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth_rules,
    check_listed_auth_events,
)
from federation.pdu import Event
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.federation.builders import Room, make_event, standard_room

ALL = list(KNOWN_ROOM_VERSIONS.values())
PRE_V12 = [v for v in ALL if not v.room_id_from_create_event]
V12 = [v for v in ALL if v.room_id_from_create_event]

CREATOR = "@creator:test"
ALICE = "@alice:test"
BOB = "@bob:test"
REMOTE = "@mallory:remote"


def ids(versions: list[RoomVersion]) -> list[str]:
    return [f"v{v.identifier}" for v in versions]


def allowed(event: Event, state: dict[tuple[str, str], Event]) -> bool:
    try:
        check_auth_rules(event, state)
    except AuthError:
        return False
    return True


def listed_ok(
    event: Event, auth_events: list[Event], rejected: frozenset[str] = frozenset()
) -> bool:
    try:
        check_listed_auth_events(event, auth_events, rejected)
    except AuthError:
        return False
    return True


# --- Rule 1: m.room.create -------------------------------------------------------------------


def create_event(room_version: RoomVersion, **overrides: Any) -> Event:
    sender = overrides.pop("sender", CREATOR)
    content: dict[str, Any] = {"room_version": room_version.identifier}
    if not room_version.implicit_room_creator:
        content["creator"] = CREATOR
    content.update(overrides.pop("content", {}))
    kwargs: dict[str, Any] = {"state_key": "", "content": content}
    kwargs["room_id"] = None if room_version.room_id_from_create_event else "!room:test"
    kwargs.update(overrides)
    return make_event(room_version, "$create:test", "m.room.create", sender, **kwargs)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_create_event_without_prev_events_is_allowed(room_version: RoomVersion) -> None:
    assert allowed(create_event(room_version), {})


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_create_event_with_prev_events_is_rejected(room_version: RoomVersion) -> None:
    assert not allowed(create_event(room_version, prev_events=["$earlier:test"]), {})


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("content_room_version", "ok"),
    [("1", True), ("12", True), ("99", False), ("", False), (12, False), (None, False)],
)
def test_create_content_room_version_must_be_a_known_version(
    room_version: RoomVersion, content_room_version: object, ok: bool
) -> None:
    event = create_event(room_version, content={"room_version": content_room_version})
    assert allowed(event, {}) is ok


@pytest.mark.parametrize("room_version", PRE_V12, ids=ids(PRE_V12))
def test_create_room_id_domain_must_match_the_sender_domain(room_version: RoomVersion) -> None:
    assert allowed(create_event(room_version, room_id="!room:test"), {})
    assert not allowed(create_event(room_version, room_id="!room:elsewhere"), {})


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_create_needs_a_creator_until_v11(room_version: RoomVersion) -> None:
    content = {"room_version": room_version.identifier}
    event = make_event(
        room_version, "$create:test", "m.room.create", CREATOR, state_key="", content=content,
        room_id=None if room_version.room_id_from_create_event else "!room:test",
    )  # fmt: skip
    assert allowed(event, {}) is room_version.implicit_room_creator


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
def test_a_v12_create_event_with_a_room_id_is_rejected(room_version: RoomVersion) -> None:
    # The event format already drops such a PDU; the auth rule must reject it on its own too.
    event = create_event(room_version)
    with_room_id = dataclasses.replace(event, pdu={**event.pdu, "room_id": "!create:test"})
    with pytest.raises(AuthError, match="room_id"):
        check_auth_rules(with_room_id, {})


@pytest.mark.parametrize(
    ("additional_creators", "ok"),
    [
        ([], True),
        ([ALICE, BOB], True),
        (["@historical user:test"], True),  # the sender's (historical) grammar
        (ALICE, False),
        ([ALICE, 5], False),
        (["alice"], False),
        (["@alice"], False),
        ([{"user_id": ALICE}], False),
        (None, False),
    ],
)
@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
def test_v12_additional_creators_must_be_user_ids(
    room_version: RoomVersion, additional_creators: object, ok: bool
) -> None:
    event = create_event(room_version, content={"additional_creators": additional_creators})
    assert allowed(event, {}) is ok


@pytest.mark.parametrize("room_version", PRE_V12, ids=ids(PRE_V12))
def test_additional_creators_are_not_checked_before_v12(room_version: RoomVersion) -> None:
    assert allowed(create_event(room_version, content={"additional_creators": "junk"}), {})


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_second_create_event_in_a_room_is_rejected(room_version: RoomVersion) -> None:
    room = standard_room(room_version)
    room_id = None if room_version.room_id_from_create_event else room.room_id
    second = room.build(
        "m.room.create",
        CREATOR,
        {"creator": CREATOR},
        state_key="",
        auth_events=[],
        room_id=room_id,
    )
    assert second.prev_event_ids  # it follows the room's history, so it cannot be a create
    assert not allowed(second, room.auth_state())


# --- Rule 2 (v12) and the create event of the auth state ------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_an_event_without_a_create_event_in_its_auth_state_is_rejected(
    room_version: RoomVersion,
) -> None:
    room = standard_room(room_version)
    message = room.build("m.room.message", CREATOR, {"body": "hi"})
    state = room.auth_state()
    assert allowed(message, state)
    del state[("m.room.create", "")]
    assert not allowed(message, state)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_an_event_whose_room_is_not_that_of_the_create_event_is_rejected(
    room_version: RoomVersion,
) -> None:
    room = standard_room(room_version)
    other_room = "!other:test" if not room_version.room_id_from_create_event else "!elsewhere"
    message = room.build("m.room.message", CREATOR, {"body": "hi"}, room_id=other_room)
    assert not allowed(message, room.auth_state())


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_create_event_of_another_room_version_in_the_auth_state_is_rejected(
    room_version: RoomVersion,
) -> None:
    room = standard_room(room_version)
    message = room.build("m.room.message", CREATOR, {"body": "hi"})
    other_version = KNOWN_ROOM_VERSIONS["1" if room_version.identifier != "1" else "2"]
    state = room.auth_state()
    state[C] = make_event(
        other_version, room.create.event_id, "m.room.create", CREATOR, state_key="",
        content={"creator": CREATOR}, room_id=room.room_id,
    )  # fmt: skip
    with pytest.raises(AuthError, match="room version"):
        check_auth_rules(message, state)


# --- Auth events selection -------------------------------------------------------------------

C, PL, JR = ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")


def member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


TPI_CONTENT = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}
SELECTION_CASES: list[tuple[str, str, str | None, dict[str, Any], list[tuple[str, str]]]] = [
    ("m.room.create", CREATOR, "", {}, []),
    ("m.room.message", ALICE, None, {}, [PL, member(ALICE)]),
    ("m.room.topic", ALICE, "", {}, [PL, member(ALICE)]),
    ("m.room.member", ALICE, ALICE, {"membership": "join"}, [PL, member(ALICE), JR]),
    ("m.room.member", ALICE, BOB, {"membership": "invite"}, [PL, member(ALICE), member(BOB), JR]),
    ("m.room.member", ALICE, ALICE, {"membership": "knock"}, [PL, member(ALICE), JR]),
    ("m.room.member", ALICE, BOB, {"membership": "ban"}, [PL, member(ALICE), member(BOB)]),
    ("m.room.member", ALICE, ALICE, {"membership": "leave"}, [PL, member(ALICE)]),
    (
        "m.room.member", ALICE, BOB, TPI_CONTENT,
        [PL, member(ALICE), member(BOB), JR, ("m.room.third_party_invite", "tok")],
    ),
]  # fmt: skip


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("event_type", "sender", "state_key", "content", "expected"), SELECTION_CASES
)
def test_auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    selected = auth_types_for_event(room_version, event_type, sender, state_key, content)
    if event_type != "m.room.create" and not room_version.room_id_from_create_event:
        expected = [C, *expected]  # v1–v11 select the create event, v12 never does
    assert selected == expected


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_restricted_join_selects_the_authorising_member_from_v8(room_version: RoomVersion) -> None:
    content = {"membership": "join", "join_authorised_via_users_server": CREATOR}
    selected = auth_types_for_event(room_version, "m.room.member", ALICE, ALICE, content)
    assert (member(CREATOR) in selected) is room_version.restricted_join_rule


# --- Considering the event's auth_events -----------------------------------------------------


def room_with_message(room_version: RoomVersion) -> tuple[Room, Event]:
    room = standard_room(room_version, members={ALICE: "join"})
    return room, room.build("m.room.message", ALICE, {"body": "hi"})


def listed(room: Room, event: Event) -> list[Event]:
    return [room.events[i] for i in event.auth_event_ids]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_the_selected_auth_events_are_accepted(room_version: RoomVersion) -> None:
    room, message = room_with_message(room_version)
    assert listed_ok(message, listed(room, message))
    join = room.member_event(BOB, "join")
    assert listed_ok(join, listed(room, join))


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_duplicate_auth_events_for_one_state_key_are_rejected(room_version: RoomVersion) -> None:
    room, _ = room_with_message(room_version)
    old_power = room.state[PL]
    room.add("m.room.power_levels", CREATOR, dict(old_power.content), state_key="")
    auth = [room.state[PL].event_id, old_power.event_id, room.state[member(ALICE)].event_id]
    if not room_version.room_id_from_create_event:
        auth.append(room.create.event_id)
    message = room.build("m.room.message", ALICE, {"body": "hi"}, auth_events=auth)
    with pytest.raises(AuthError, match="duplicate"):
        check_listed_auth_events(message, listed(room, message), ())


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_auth_events_not_selected_for_the_event_are_rejected(room_version: RoomVersion) -> None:
    room, message = room_with_message(room_version)
    for unexpected in (room.state[JR], room.state[member(CREATOR)]):
        auth = [*message.auth_event_ids, unexpected.event_id]
        event = room.build("m.room.message", ALICE, {"body": "hi"}, auth_events=auth)
        with pytest.raises(AuthError, match="not expected"):
            check_listed_auth_events(event, listed(room, event), ())


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_rejected_auth_events_are_rejected(room_version: RoomVersion) -> None:
    room, message = room_with_message(room_version)
    power = room.state[PL].event_id
    assert not listed_ok(message, listed(room, message), frozenset([power]))


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_auth_events_from_another_room_are_rejected(room_version: RoomVersion) -> None:
    room, message = room_with_message(room_version)
    foreign_room = "!other:test" if not room_version.room_id_from_create_event else "!other"
    power = room.state[PL]
    foreign_power = make_event(
        room_version, power.event_id, power.type, power.sender, state_key="",
        content=dict(power.content), room_id=foreign_room,
    )  # fmt: skip
    auth = [foreign_power if e.event_id == power.event_id else e for e in listed(room, message)]
    with pytest.raises(AuthError, match="another room"):
        check_listed_auth_events(message, auth, ())


@pytest.mark.parametrize("room_version", PRE_V12, ids=ids(PRE_V12))
def test_auth_events_without_the_create_event_are_rejected_before_v12(
    room_version: RoomVersion,
) -> None:
    room, message = room_with_message(room_version)
    auth = [e for e in listed(room, message) if e.type != "m.room.create"]
    with pytest.raises(AuthError, match=r"no m\.room\.create"):
        check_listed_auth_events(message, auth, ())


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
def test_a_v12_event_listing_the_create_event_is_rejected(room_version: RoomVersion) -> None:
    room, message = room_with_message(room_version)
    auth = [*message.auth_event_ids, room.create.event_id]
    event = room.build("m.room.message", ALICE, {"body": "hi"}, auth_events=auth)
    with pytest.raises(AuthError, match="must not be listed"):
        check_listed_auth_events(event, listed(room, event), ())


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_create_event_may_list_no_auth_events(room_version: RoomVersion) -> None:
    room = Room(room_version)
    assert listed_ok(room.create, [])
    join = room.member(CREATOR, "join")
    create_with_auth = make_event(
        room_version, "$create2:test", "m.room.create", CREATOR, state_key="",
        content=dict(room.create.content), auth_events=[join.event_id],
        room_id=None if room_version.room_id_from_create_event else room.room_id,
    )  # fmt: skip
    assert not listed_ok(create_with_auth, [join])


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_events_handed_in_that_the_event_does_not_list_are_rejected(
    room_version: RoomVersion,
) -> None:
    room, message = room_with_message(room_version)
    assert not listed_ok(message, [*listed(room, message), room.state[JR]])
    # the right kind of event, but not the one listed
    old_power = room.state[PL]
    new_power = room.add("m.room.power_levels", CREATOR, dict(old_power.content), state_key="")
    swapped = [new_power if e == old_power else e for e in listed(room, message)]
    with pytest.raises(AuthError, match="not among"):
        check_listed_auth_events(message, swapped, ())


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_message_event_as_auth_event_is_rejected(room_version: RoomVersion) -> None:
    room, message = room_with_message(room_version)
    chat = room.add("m.room.message", ALICE, {"body": "earlier"})
    event = room.build(
        "m.room.message",
        ALICE,
        {"body": "hi"},
        auth_events=[*message.auth_event_ids, chat.event_id],
    )
    with pytest.raises(AuthError, match="not a state event"):
        check_listed_auth_events(event, listed(room, event), ())


# --- Rule 4: m.federate ----------------------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("federate", "sender", "ok"),
    [
        (False, REMOTE, False),
        (False, ALICE, True),
        (True, REMOTE, True),
        (None, REMOTE, True),
    ],
)
def test_m_federate_false_keeps_out_other_servers(
    room_version: RoomVersion, federate: bool | None, sender: str, ok: bool
) -> None:
    create_content = {} if federate is None else {"m.federate": federate}
    room = standard_room(room_version, create_content=create_content)
    assert allowed(room.member_event(sender, "join"), room.auth_state()) is ok


# --- Rules 6–9: any event ----------------------------------------------------------------------

MessageCase = tuple[str, Callable[[Room], Event], bool]
GENERAL_CASES: list[MessageCase] = [
    ("member sends a message", lambda r: r.build("m.room.message", ALICE, {"body": "x"}), True),
    ("non-member sends a message", lambda r: r.build("m.room.message", BOB, {"body": "x"}), False),
    ("invited user sends a message", lambda r: r.build("m.room.message", "@inv:test", {}), False),
    ("user at 0 sets the topic", lambda r: r.build("m.room.topic", ALICE, {}, state_key=""), False),
    ("creator sets the topic", lambda r: r.build("m.room.topic", CREATOR, {}, state_key=""), True),
    (
        "message type above the sender's level",
        lambda r: r.build("m.room.encrypted", ALICE, {}),
        False,
    ),
    ("mod sends a restricted type", lambda r: r.build("m.room.encrypted", "@mod:test", {}), True),
    (
        "state keyed by another user",
        lambda r: r.build("org.example.status", ALICE, {}, state_key=BOB),
        False,
    ),
    (
        "state keyed by the sender",
        lambda r: r.build("org.example.status", ALICE, {}, state_key=ALICE),
        True,
    ),
    (
        "state keyed by a non-user '@'",
        lambda r: r.build("org.example.status", ALICE, {}, state_key="@x"),
        False,
    ),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(("case", "build", "ok"), GENERAL_CASES, ids=[c[0] for c in GENERAL_CASES])
def test_membership_and_required_power_level_for_events(
    room_version: RoomVersion, case: str, build: Callable[[Room], Event], ok: bool
) -> None:
    room = standard_room(
        room_version,
        users={"@mod:test": 50},
        levels={"events": {"m.room.encrypted": 50, "org.example.status": 0}},
        members={ALICE: "join", "@mod:test": "join", "@inv:test": "invite"},
    )
    assert allowed(build(room), room.auth_state()) is ok


# --- m.room.third_party_invite (rule 7) --------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(("invite_level", "ok"), [(0, True), (50, False)])
def test_third_party_invite_event_needs_the_invite_level(
    room_version: RoomVersion, invite_level: int, ok: bool
) -> None:
    room = standard_room(room_version, levels={"invite": invite_level}, members={ALICE: "join"})
    event = room.build("m.room.third_party_invite", ALICE, {"public_key": "x"}, state_key="token")
    assert allowed(event, room.auth_state()) is ok


# --- m.room.aliases (v1–v5 rule 4) -------------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("sender", "state_key", "special_ok", "normal_ok"),
    [
        (REMOTE, "remote", True, False),  # not joined, state_default 50
        (REMOTE, "test", False, False),
        (CREATOR, "test", True, True),
        (CREATOR, "remote", False, True),
    ],
)
def test_aliases_are_keyed_by_the_sender_server_until_v6(
    room_version: RoomVersion, sender: str, state_key: str, special_ok: bool, normal_ok: bool
) -> None:
    room = standard_room(room_version)
    event = room.build("m.room.aliases", sender, {"aliases": []}, state_key=state_key)
    expected = special_ok if room_version.special_case_aliases_auth else normal_ok
    assert allowed(event, room.auth_state()) is expected


ALIASES_SPECIAL = [v for v in ALL if v.special_case_aliases_auth]


@pytest.mark.parametrize("room_version", ALIASES_SPECIAL, ids=ids(ALIASES_SPECIAL))
def test_aliases_without_a_state_key_are_rejected_until_v6(room_version: RoomVersion) -> None:
    room = standard_room(room_version)
    assert not allowed(room.build("m.room.aliases", CREATOR, {"aliases": []}), room.auth_state())


# --- m.room.redaction (v1–v2 rule 11) ----------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("sender", "redacts", "v1_ok"),
    [
        ("@mod:test", "$target:elsewhere", True),  # redact level
        (ALICE, "$target:test", True),  # same event ID domain as the redaction
        (ALICE, "$target:elsewhere", False),
    ],
)
def test_redactions_need_the_redact_level_or_the_same_domain_in_v1_v2(
    room_version: RoomVersion, sender: str, redacts: str, v1_ok: bool
) -> None:
    room = standard_room(
        room_version, users={"@mod:test": 50}, members={ALICE: "join", "@mod:test": "join"}
    )
    event = room.build("m.room.redaction", sender, {}, redacts=redacts)
    expected = v1_ok if room_version.redaction_auth_rule else True
    assert allowed(event, room.auth_state()) is expected


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_redactions_are_subject_to_the_events_levels(room_version: RoomVersion) -> None:
    room = standard_room(
        room_version, levels={"events": {"m.room.redaction": 50}}, members={ALICE: "join"}
    )
    event = room.build("m.room.redaction", ALICE, {}, redacts="$target:test")
    assert not allowed(event, room.auth_state())
