"""Auth rules for m.room.member (rule 5 of rooms/v12.md and its earlier forms): join, invite,
leave, ban, knock, restricted joins and third-party invites, across room versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from federation.auth_rules import AuthError, check_auth_rules
from federation.pdu import Event
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from federation.signing import generate_signing_key, sign_json
from tests.federation.builders import Room, make_event, standard_room

ALL = list(KNOWN_ROOM_VERSIONS.values())
KNOCK = [v for v in ALL if v.knock_join_rule]
RESTRICTED = [v for v in ALL if v.restricted_join_rule]
V12 = [v for v in ALL if v.privileged_room_creators]

CREATOR = "@creator:test"
ALICE = "@alice:test"
BOB = "@bob:test"
MOD = "@mod:test"
MOD2 = "@mod2:test"
REMOTE_MOD = "@mod:remote"


def ids(versions: list[RoomVersion]) -> list[str]:
    return [f"v{v.identifier}" for v in versions]


def allowed(event: Event, room: Room) -> bool:
    try:
        check_auth_rules(event, room.auth_state())
    except AuthError:
        return False
    return True


# Which room versions allow a case: every one, none, or those with a feature.
Versions = Callable[[RoomVersion], bool]


def every(_: RoomVersion) -> bool:
    return True


def none(_: RoomVersion) -> bool:
    return False


def knock(v: RoomVersion) -> bool:
    return v.knock_join_rule


def restricted(v: RoomVersion) -> bool:
    return v.restricted_join_rule


def knock_restricted(v: RoomVersion) -> bool:
    return v.knock_restricted_join_rule


# --- 5.1: shape ------------------------------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("content", "state_key"),
    [
        ({"membership": "join"}, None),
        ({}, ALICE),
        ({"membership": 1}, ALICE),
        ({"membership": "dance"}, ALICE),
        ({"membership": "JOIN"}, ALICE),
    ],
)
def test_malformed_or_unknown_membership_is_rejected(
    room_version: RoomVersion, content: dict[str, Any], state_key: str | None
) -> None:
    room = standard_room(room_version)
    event = room.build("m.room.member", ALICE, content, state_key=state_key)
    assert not allowed(event, room)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_knock_membership_is_unknown_before_v7(room_version: RoomVersion) -> None:
    room = standard_room(room_version, join_rule="knock")
    assert allowed(room.member_event(ALICE, "knock"), room) is room_version.knock_join_rule


# --- 5.3: join -------------------------------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_the_creator_may_join_right_after_the_create_event(room_version: RoomVersion) -> None:
    room = Room(room_version, CREATOR)
    assert allowed(room.member_event(CREATOR, "join"), room)
    assert not allowed(room.member_event(ALICE, "join"), room)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_the_creator_first_join_must_follow_only_the_create_event(
    room_version: RoomVersion,
) -> None:
    room = Room(room_version, CREATOR)
    join = room.build(
        "m.room.member", CREATOR, {"membership": "join"}, state_key=CREATOR,
        prev_events=[room.create.event_id, "$other:test"],
    )  # fmt: skip
    assert not allowed(join, room)  # no join rules: "invite", and the creator is not invited


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_the_first_join_is_by_content_creator_until_v10_and_the_sender_after(
    room_version: RoomVersion,
) -> None:
    room = Room(room_version, CREATOR, create_content={"creator": ALICE})
    assert allowed(room.member_event(ALICE, "join"), room) is not (
        room_version.implicit_room_creator
    )
    assert allowed(room.member_event(CREATOR, "join"), room) is room_version.implicit_room_creator


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
def test_an_additional_creator_does_not_get_the_first_join(room_version: RoomVersion) -> None:
    room = Room(room_version, CREATOR, create_content={"additional_creators": [ALICE]})
    assert not allowed(room.member_event(ALICE, "join"), room)


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_a_user_may_not_join_on_behalf_of_another(room_version: RoomVersion) -> None:
    room = standard_room(room_version)
    assert not allowed(room.member_event(ALICE, "join", sender=CREATOR), room)


JOIN_CASES: list[tuple[str, str, Versions]] = [
    ("public", "leave", every),
    ("public", "invite", every),
    ("public", "join", every),
    ("public", "ban", none),  # a banned user may not rejoin
    ("invite", "leave", none),
    ("invite", "invite", every),
    ("invite", "join", every),
    ("invite", "ban", none),
    ("knock", "leave", none),
    ("knock", "invite", knock),
    ("knock", "join", knock),
    ("knock", "ban", none),
    ("restricted", "leave", none),  # without join_authorised_via_users_server
    ("restricted", "invite", restricted),
    ("restricted", "join", restricted),
    ("restricted", "ban", none),
    ("knock_restricted", "leave", none),
    ("knock_restricted", "invite", knock_restricted),
    ("knock_restricted", "join", knock_restricted),
    ("knock_restricted", "ban", none),
    ("private", "invite", none),
    ("private", "join", none),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("join_rule", "membership", "versions"),
    JOIN_CASES,
    ids=[f"{rule}-from-{membership}" for rule, membership, _ in JOIN_CASES],
)
def test_join_by_join_rule_and_current_membership(
    room_version: RoomVersion, join_rule: str, membership: str, versions: Versions
) -> None:
    room = standard_room(room_version, join_rule=join_rule, members={ALICE: membership})
    assert allowed(room.member_event(ALICE, "join"), room) is versions(room_version)


@pytest.mark.parametrize("room_version", KNOCK, ids=ids(KNOCK))
def test_a_knocking_user_may_not_join_a_knock_room_uninvited(room_version: RoomVersion) -> None:
    room = standard_room(room_version, join_rule="knock", members={ALICE: "knock"})
    assert not allowed(room.member_event(ALICE, "join"), room)


# --- 5.2 and 5.3.5: restricted joins ---------------------------------------------------------


def restricted_room(room_version: RoomVersion, join_rule: str = "restricted") -> Room:
    return standard_room(
        room_version,
        join_rule=join_rule,
        levels={"invite": 50},
        users={REMOTE_MOD: 50, MOD: 0, "@left:remote": 50},
        members={REMOTE_MOD: "join", MOD: "join", "@left:remote": "leave"},
    )


SIGNED_BY_BOTH = {"test": {"ed25519:a": "c2ln"}, "remote": {"ed25519:b": "c2ln"}}
RESTRICTED_CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, bool]] = [
    ("authorised by a joined user who may invite", {"via": REMOTE_MOD}, SIGNED_BY_BOTH, True),
    ("authoriser's server did not sign", {"via": REMOTE_MOD}, None, False),
    ("authoriser may not invite", {"via": MOD}, SIGNED_BY_BOTH, False),
    ("authoriser is not joined", {"via": "@left:remote"}, SIGNED_BY_BOTH, False),
    ("authoriser is not a user ID", {"via": "remote"}, SIGNED_BY_BOTH, False),
    ("authoriser is not a string", {"via": 5}, SIGNED_BY_BOTH, False),
    ("no authoriser", {}, None, False),
]


@pytest.mark.parametrize("join_rule", ["restricted", "knock_restricted"])
@pytest.mark.parametrize("room_version", RESTRICTED, ids=ids(RESTRICTED))
@pytest.mark.parametrize(
    ("case", "via", "signatures", "ok"), RESTRICTED_CASES, ids=[c[0] for c in RESTRICTED_CASES]
)
def test_restricted_join(
    room_version: RoomVersion,
    join_rule: str,
    case: str,
    via: dict[str, Any],
    signatures: dict[str, Any] | None,
    ok: bool,
) -> None:
    room = restricted_room(room_version, join_rule)
    content = {"membership": "join"}
    if "via" in via:
        content["join_authorised_via_users_server"] = via["via"]
    event = room.build("m.room.member", ALICE, content, state_key=ALICE, signatures=signatures)
    supported = join_rule == "restricted" or room_version.knock_restricted_join_rule
    assert allowed(event, room) is (ok and supported)


@pytest.mark.parametrize("room_version", RESTRICTED, ids=ids(RESTRICTED))
def test_any_membership_naming_an_authoriser_needs_its_server_signature(
    room_version: RoomVersion,
) -> None:
    room = restricted_room(room_version)
    room.member(ALICE, "invite", CREATOR)
    content = {"membership": "join", "join_authorised_via_users_server": REMOTE_MOD}
    unsigned = room.build("m.room.member", ALICE, content, state_key=ALICE)
    assert not allowed(unsigned, room)  # although invited (5.2 comes before 5.3)
    leave = {"membership": "leave", "join_authorised_via_users_server": REMOTE_MOD}
    assert not allowed(room.build("m.room.member", ALICE, leave, state_key=ALICE), room)


PRE_RESTRICTED = [v for v in ALL if not v.restricted_join_rule]


@pytest.mark.parametrize("room_version", PRE_RESTRICTED, ids=ids(PRE_RESTRICTED))
def test_join_authorised_via_users_server_means_nothing_before_v8(
    room_version: RoomVersion,
) -> None:
    room = standard_room(room_version, join_rule="restricted", users={MOD: 50},
                         members={MOD: "join"})  # fmt: skip
    content = {"membership": "join", "join_authorised_via_users_server": MOD}
    assert not allowed(room.build("m.room.member", ALICE, content, state_key=ALICE), room)
    room.set_join_rule("public")
    content["join_authorised_via_users_server"] = "not a user"
    assert allowed(room.build("m.room.member", ALICE, content, state_key=ALICE), room)


# --- 5.4: invite -----------------------------------------------------------------------------

INVITE_CASES: list[tuple[str, str, str, dict[str, Any], bool]] = [
    ("creator invites a newcomer", CREATOR, BOB, {}, True),
    ("member invites at invite level 0", ALICE, BOB, {}, True),
    ("member below the invite level", ALICE, BOB, {"invite": 10}, False),
    ("moderator at the invite level", MOD, BOB, {"invite": 50}, True),
    ("non-member invites", "@outsider:test", BOB, {}, False),
    ("invited user invites", "@invited:test", BOB, {}, False),
    ("invite a joined user", CREATOR, ALICE, {}, False),
    ("invite a banned user", CREATOR, "@banned:test", {}, False),
    ("invite an invited user again", CREATOR, "@invited:test", {}, True),
    ("invite a user who left", CREATOR, "@left:test", {}, True),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("case", "sender", "target", "levels", "ok"), INVITE_CASES, ids=[c[0] for c in INVITE_CASES]
)
def test_invite(
    room_version: RoomVersion,
    case: str,
    sender: str,
    target: str,
    levels: dict[str, Any],
    ok: bool,
) -> None:
    room = standard_room(
        room_version,
        users={MOD: 50, "@outsider:test": 100},
        levels=levels,
        members={
            ALICE: "join", MOD: "join", "@invited:test": "invite",
            "@banned:test": "ban", "@left:test": "leave",
        },
    )  # fmt: skip
    assert allowed(room.member_event(target, "invite", sender=sender), room) is ok


@pytest.mark.parametrize("room_version", KNOCK, ids=ids(KNOCK))
def test_a_knocking_user_may_be_invited(room_version: RoomVersion) -> None:
    room = standard_room(room_version, join_rule="knock", members={ALICE: "knock"})
    assert allowed(room.member_event(ALICE, "invite", sender=CREATOR), room)


# --- 5.5: leave (leave, reject, kick, unban) --------------------------------------------------

LEAVE_CASES: list[tuple[str, str, str, Versions]] = [
    ("member leaves", ALICE, ALICE, every),
    ("invited user rejects", "@invited:test", "@invited:test", every),
    ("knocking user retracts", "@knocking:test", "@knocking:test", knock),
    ("user who left leaves again", "@left:test", "@left:test", none),
    ("banned user unbans themself", "@banned:test", "@banned:test", none),
    ("stranger leaves", BOB, BOB, none),
    ("creator kicks a member", CREATOR, ALICE, every),
    ("moderator kicks a member", MOD, ALICE, every),
    ("moderator revokes an invite", MOD, "@invited:test", every),
    ("moderator kicks an equal", MOD, MOD2, none),
    ("moderator kicks the creator", MOD, CREATOR, none),
    ("member kicks a lower member", ALICE, "@low:test", none),  # below the kick level
    ("non-member with power kicks", "@outsider:test", ALICE, none),
    ("creator unbans", CREATOR, "@banned:test", every),
    ("kicker below the ban level unbans", MOD, "@banned:test", none),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("case", "sender", "target", "versions"), LEAVE_CASES, ids=[c[0] for c in LEAVE_CASES]
)
def test_leave(
    room_version: RoomVersion, case: str, sender: str, target: str, versions: Versions
) -> None:
    members = {
        ALICE: "join", MOD: "join", MOD2: "join", "@low:test": "join",
        "@invited:test": "invite", "@left:test": "leave", "@banned:test": "ban",
    }  # fmt: skip
    if room_version.knock_join_rule:
        members["@knocking:test"] = "knock"
    room = standard_room(
        room_version,
        users={MOD: 50, MOD2: 50, "@low:test": -1, "@outsider:test": 100},
        levels={"kick": 50, "ban": 60},
        members=members,
    )
    assert allowed(room.member_event(target, "leave", sender=sender), room) is versions(
        room_version
    )


# --- 5.6: ban --------------------------------------------------------------------------------

BAN_CASES: list[tuple[str, str, str, bool]] = [
    ("creator bans a member", CREATOR, ALICE, True),
    ("creator bans a stranger", CREATOR, BOB, True),
    ("moderator bans a member", MOD, ALICE, True),
    ("moderator bans an equal", MOD, MOD2, False),
    ("moderator bans the creator", MOD, CREATOR, False),
    ("member bans a moderator", ALICE, MOD, False),
    ("member bans a lower member", ALICE, "@low:test", False),  # below the ban level
    ("non-member with power bans", "@outsider:test", ALICE, False),
    ("banned user bans", "@banned:test", ALICE, False),
]


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("case", "sender", "target", "ok"), BAN_CASES, ids=[c[0] for c in BAN_CASES]
)
def test_ban(room_version: RoomVersion, case: str, sender: str, target: str, ok: bool) -> None:
    room = standard_room(
        room_version,
        # the banned user would have the power to ban, were they joined
        users={MOD: 50, MOD2: 50, "@low:test": -1, "@outsider:test": 100, "@banned:test": 45},
        levels={"ban": 40},
        members={
            ALICE: "join", MOD: "join", MOD2: "join", "@low:test": "join", "@banned:test": "ban"
        },
    )  # fmt: skip
    assert allowed(room.member_event(target, "ban", sender=sender), room) is ok


# --- 5.7: knock ------------------------------------------------------------------------------

KNOCK_CASES: list[tuple[str, str, str, str, Versions]] = [
    ("knock on a knock room", "knock", ALICE, ALICE, every),
    ("knock on a knock_restricted room", "knock_restricted", ALICE, ALICE, knock_restricted),
    ("knock on a public room", "public", ALICE, ALICE, none),
    ("knock on an invite room", "invite", ALICE, ALICE, none),
    ("knock on a restricted room", "restricted", ALICE, ALICE, none),
    ("knock on behalf of another", "knock", CREATOR, ALICE, none),
    ("knock again", "knock", "@knocking:test", "@knocking:test", every),
    ("knock when invited", "knock", "@invited:test", "@invited:test", none),
    ("knock when joined", "knock", MOD, MOD, none),
    ("knock when banned", "knock", "@banned:test", "@banned:test", none),
    ("knock after leaving", "knock", "@left:test", "@left:test", every),
]


@pytest.mark.parametrize("room_version", KNOCK, ids=ids(KNOCK))
@pytest.mark.parametrize(
    ("case", "join_rule", "sender", "target", "versions"),
    KNOCK_CASES,
    ids=[c[0] for c in KNOCK_CASES],
)
def test_knock(
    room_version: RoomVersion,
    case: str,
    join_rule: str,
    sender: str,
    target: str,
    versions: Versions,
) -> None:
    room = standard_room(
        room_version,
        join_rule=join_rule,
        members={
            MOD: "join", "@knocking:test": "knock", "@invited:test": "invite",
            "@banned:test": "ban", "@left:test": "leave",
        },
    )  # fmt: skip
    assert allowed(room.member_event(target, "knock", sender=sender), room) is versions(
        room_version
    )


# --- v12: room creators have infinite power ---------------------------------------------------

V12_CASES: list[tuple[str, str, str, str, bool]] = [
    ("admin at 100 kicks the creator", "@admin:test", CREATOR, "leave", False),
    ("admin at 100 bans the creator", "@admin:test", CREATOR, "ban", False),
    ("admin bans an additional creator", "@admin:test", ALICE, "ban", False),
    ("creator bans an admin at 100", CREATOR, "@admin:test", "ban", True),
    ("additional creator kicks an admin", ALICE, "@admin:test", "leave", True),
    ("creator bans another creator", CREATOR, ALICE, "ban", False),
    ("additional creator kicks the creator", ALICE, CREATOR, "leave", False),
]


@pytest.mark.parametrize("room_version", V12, ids=ids(V12))
@pytest.mark.parametrize(
    ("case", "sender", "target", "membership", "ok"), V12_CASES, ids=[c[0] for c in V12_CASES]
)
def test_v12_creators_outrank_every_power_level(
    room_version: RoomVersion, case: str, sender: str, target: str, membership: str, ok: bool
) -> None:
    room = standard_room(
        room_version,
        create_content={"additional_creators": [ALICE]},
        users={"@admin:test": 100},
        levels={"ban": 100, "kick": 100},
        members={ALICE: "join", "@admin:test": "join"},
    )
    assert allowed(room.member_event(target, membership, sender=sender), room) is ok


# --- 5.4.1: third-party invites ---------------------------------------------------------------

ID_SERVER = "id.example"
KEY = generate_signing_key("k1")
OTHER_KEY = generate_signing_key("k2")
LISTED_KEY = generate_signing_key("k3")


def third_party_room(room_version: RoomVersion, public_key: str | None = None) -> Room:
    room = standard_room(room_version, join_rule="invite", members={ALICE: "join",
                         "@banned:test": "ban"})  # fmt: skip
    content = {
        "display_name": "b...@example.com",
        "key_validity_url": "https://id.example/_matrix/identity/v2/pubkey/isvalid",
        "public_key": public_key if public_key is not None else KEY.public_key_base64,
        "public_keys": [{"public_key": LISTED_KEY.public_key_base64}],
    }
    room.add("m.room.third_party_invite", ALICE, content, state_key="tok", checked=True)
    return room


def signed(mxid: str = BOB, token: str = "tok", key: Any = KEY) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "sender": ALICE, "token": token}, ID_SERVER, key)


def redeem(room: Room, third_party_invite: Any, target: str = BOB, sender: str = ALICE) -> Event:
    content = {"membership": "invite", "third_party_invite": third_party_invite}
    return room.build("m.room.member", sender, content, state_key=target)


TPI_CASES: list[tuple[str, Callable[[], Any], str, str, bool]] = [
    ("signed with the public_key", lambda: {"signed": signed()}, BOB, ALICE, True),
    ("signed with a listed key", lambda: {"signed": signed(key=LISTED_KEY)}, BOB, ALICE, True),
    ("signed with an unknown key", lambda: {"signed": signed(key=OTHER_KEY)}, BOB, ALICE, False),
    ("signed content altered", lambda: {"signed": {**signed(), "extra": 1}}, BOB, ALICE, False),
    ("signature removed", lambda: {"signed": {**signed(), "signatures": {}}}, BOB, ALICE, False),
    ("signatures malformed", lambda: {"signed": {**signed(), "signatures": 1}}, BOB, ALICE, False),
    ("no signed", lambda: {"display_name": "b"}, BOB, ALICE, False),
    ("signed not an object", lambda: {"signed": "x"}, BOB, ALICE, False),
    ("third_party_invite not an object", lambda: "x", BOB, ALICE, False),
    ("mxid does not match", lambda: {"signed": signed(mxid=BOB)}, "@carol:test", ALICE, False),
    ("no mxid", lambda: {"signed": without(signed(), "mxid")}, BOB, ALICE, False),
    ("no token", lambda: {"signed": without(signed(), "token")}, BOB, ALICE, False),
    ("no invite with that token", lambda: {"signed": signed(token="nope")}, BOB, ALICE, False),
    ("sent by another user", lambda: {"signed": signed()}, BOB, CREATOR, False),
    ("target is banned", lambda: {"signed": signed("@banned:test")}, "@banned:test", ALICE, False),
]


def without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
@pytest.mark.parametrize(
    ("case", "make", "target", "sender", "ok"), TPI_CASES, ids=[c[0] for c in TPI_CASES]
)
def test_third_party_invite(
    room_version: RoomVersion,
    case: str,
    make: Callable[[], Any],
    target: str,
    sender: str,
    ok: bool,
) -> None:
    room = third_party_room(room_version)
    assert allowed(redeem(room, make(), target, sender), room) is ok


@pytest.mark.parametrize("room_version", ALL, ids=ids(ALL))
def test_third_party_invite_with_a_malformed_public_key_still_checks_public_keys(
    room_version: RoomVersion,
) -> None:
    room = third_party_room(room_version, public_key="not base64!")
    assert not allowed(redeem(room, {"signed": signed()}), room)
    assert allowed(redeem(room, {"signed": signed(key=LISTED_KEY)}), room)


def test_the_listed_third_party_invite_event_is_selected_by_token() -> None:
    room_version = KNOWN_ROOM_VERSIONS["11"]
    room = third_party_room(room_version)
    event = redeem(room, {"signed": signed()})
    listed = {room.events[i].state_tuple for i in event.auth_event_ids}
    assert ("m.room.third_party_invite", "tok") in listed


def test_an_invite_event_built_outside_the_room_helper_is_checked_the_same() -> None:
    room_version = KNOWN_ROOM_VERSIONS["10"]
    room = third_party_room(room_version)
    event = make_event(
        room_version, "$tpi:test", "m.room.member", ALICE, state_key=BOB,
        content={"membership": "invite", "third_party_invite": {"signed": signed()}},
        room_id=room.room_id,
    )  # fmt: skip
    check_auth_rules(event, room.auth_state())


PRE_KNOCK = [v for v in ALL if not v.knock_join_rule]


@pytest.mark.parametrize("room_version", PRE_KNOCK, ids=ids(PRE_KNOCK))
def test_a_knock_membership_cannot_be_left_before_v7(room_version: RoomVersion) -> None:
    # Such a membership can only be in state unchecked; leaving it is not a retraction.
    room = standard_room(room_version)
    room.member(ALICE, "knock")
    assert not allowed(room.member_event(ALICE, "leave"), room)
