"""Federation bodies: transactions and the make/send join, leave, knock and invite handshakes."""

from __future__ import annotations

from typing import Any

import pytest

from federation.pdu import Event
from federation.room_versions import V1, V7, V10, V12
from federation.wire import (
    MAX_EDUS_PER_TRANSACTION,
    MAX_PDUS_PER_TRANSACTION,
    Transaction,
    WireFormatError,
    build_transaction,
    build_transaction_response,
    parse_transaction,
    parse_transaction_response,
)
from federation.wire_membership import (
    SendJoinResponse,
    build_invite_response,
    build_invite_v2_request,
    build_make_membership_response,
    build_send_join_response,
    build_send_knock_response,
    check_invite_event,
    check_invite_room_state,
    check_membership_event,
    parse_invite_response,
    parse_invite_v2_request,
    parse_make_join_response,
    parse_make_knock_response,
    parse_make_leave_response,
    parse_send_join_response,
    parse_send_knock_response,
)
from tests.federation.builders import make_pdu

ROOM = "!room:resident.org"
USER = "@joiner:joining.org"
PDU: dict[str, Any] = {"type": "m.room.message", "content": {}}
EDU: dict[str, Any] = {"edu_type": "m.typing", "content": {}}


# --- transactions --------------------------------------------------------------------------


def test_transaction_round_trip() -> None:
    body = build_transaction("origin.org", 1234, [PDU], [EDU])
    assert body == {"origin": "origin.org", "origin_server_ts": 1234, "pdus": [PDU], "edus": [EDU]}
    assert parse_transaction(body) == Transaction("origin.org", 1234, (PDU,), (EDU,))


def test_transaction_without_edus_omits_the_key_and_parses() -> None:
    body = build_transaction("origin.org", 1, [PDU])
    assert "edus" not in body
    assert parse_transaction(body).edus == ()


def test_transaction_at_the_limits_is_accepted() -> None:
    body = build_transaction(
        "o.org", 1, [PDU] * MAX_PDUS_PER_TRANSACTION, [EDU] * MAX_EDUS_PER_TRANSACTION
    )
    parsed = parse_transaction(body)
    assert (len(parsed.pdus), len(parsed.edus)) == (50, 100)


@pytest.mark.parametrize(
    ("pdus", "edus", "reason"),
    [(51, 0, "51 PDUs"), (0, 101, "101 EDUs")],
)
def test_transaction_over_the_limits_is_rejected(pdus: int, edus: int, reason: str) -> None:
    body = {"origin": "o.org", "origin_server_ts": 1, "pdus": [PDU] * pdus, "edus": [EDU] * edus}
    with pytest.raises(WireFormatError, match=reason):
        parse_transaction(body)
    with pytest.raises(WireFormatError):
        build_transaction("o.org", 1, [PDU] * pdus, [EDU] * edus)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        ({"origin_server_ts": 1, "pdus": []}, "origin"),
        ({"origin": "bad name!", "origin_server_ts": 1, "pdus": []}, "origin"),
        ({"origin": "o.org", "pdus": []}, "origin_server_ts"),
        ({"origin": "o.org", "origin_server_ts": "1", "pdus": []}, "origin_server_ts"),
        ({"origin": "o.org", "origin_server_ts": True, "pdus": []}, "origin_server_ts"),
        ({"origin": "o.org", "origin_server_ts": 1}, "pdus"),
        ({"origin": "o.org", "origin_server_ts": 1, "pdus": {}}, "pdus"),
        ({"origin": "o.org", "origin_server_ts": 1, "pdus": ["x"]}, "pdus"),
        ({"origin": "o.org", "origin_server_ts": 1, "pdus": [], "edus": {}}, "edus"),
        ({"origin": "o.org", "origin_server_ts": 1, "pdus": [], "edus": [3]}, "edus"),
    ],
)
def test_malformed_transaction_is_rejected(body: Any, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        parse_transaction(body)


def test_transaction_origin_must_be_the_authenticated_sender() -> None:
    body = build_transaction("o.org", 1, [])
    assert parse_transaction(body, expected_origin="o.org").origin == "o.org"
    with pytest.raises(WireFormatError, match="sender"):
        parse_transaction(body, expected_origin="x.org")


def test_transaction_response_round_trip() -> None:
    body = build_transaction_response({"$ok": None, "$bad": "not allowed"})
    assert body == {"pdus": {"$ok": {}, "$bad": {"error": "not allowed"}}}
    assert parse_transaction_response(body) == {"$ok": None, "$bad": "not allowed"}
    with pytest.raises(WireFormatError):
        parse_transaction_response({"pdus": []})


# --- make_join / make_leave / make_knock ---------------------------------------------------


def template(membership: str = "join", **overrides: Any) -> dict[str, Any]:
    event = {
        "room_id": ROOM,
        "sender": USER,
        "state_key": USER,
        "type": "m.room.member",
        "origin": "resident.org",
        "origin_server_ts": 1,
        "content": {"membership": membership},
    }
    event.update(overrides)
    return event


def test_make_join_round_trip() -> None:
    body = build_make_membership_response(V10, template())
    assert body["room_version"] == "10"
    version, event = parse_make_join_response(body, room_id=ROOM, user_id=USER)
    assert version == "10"
    assert event == template()


def test_make_join_without_room_version_means_version_1() -> None:
    version, _ = parse_make_join_response({"event": template()}, room_id=ROOM, user_id=USER)
    assert version == "1"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (template(room_id="!other:resident.org"), "room_id"),
        (template(sender="@other:joining.org"), "sender"),
        (template(state_key="@other:joining.org"), "state_key"),
        (template(type="m.room.message"), "type"),
        (template(membership="invite"), "membership"),
        (template(content="join"), "content"),
        ("not an event", "event template"),
    ],
)
def test_make_join_template_must_be_the_join_we_asked_for(event: Any, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        parse_make_join_response({"room_version": "10", "event": event}, room_id=ROOM, user_id=USER)


def test_make_join_response_with_bad_room_version_type_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="room_version"):
        parse_make_join_response(
            {"room_version": 10, "event": template()}, room_id=ROOM, user_id=USER
        )


def test_make_leave_checks_for_a_leave() -> None:
    body = build_make_membership_response("7", template("leave"))
    assert parse_make_leave_response(body, room_id=ROOM, user_id=USER)[0] == "7"
    with pytest.raises(WireFormatError, match="membership"):
        parse_make_leave_response(
            build_make_membership_response("7", template("join")), room_id=ROOM, user_id=USER
        )


def test_make_knock_requires_a_room_version() -> None:
    body = build_make_membership_response(V7, template("knock"))
    assert parse_make_knock_response(body, room_id=ROOM, user_id=USER)[0] == "7"
    with pytest.raises(WireFormatError, match="room_version"):
        parse_make_knock_response({"event": template("knock")}, room_id=ROOM, user_id=USER)


# --- send_join response --------------------------------------------------------------------


def test_send_join_response_round_trip() -> None:
    state, auth_chain, event = [{"s": 1}], [{"a": 1}, {"a": 2}], {"e": 1}
    body = build_send_join_response(
        state, auth_chain, origin="resident.org", event=event,
        members_omitted=True, servers_in_room=["resident.org", "other.org:8448"],
    )  # fmt: skip
    assert parse_send_join_response(body) == SendJoinResponse(
        state=({"s": 1},),
        auth_chain=({"a": 1}, {"a": 2}),
        event={"e": 1},
        members_omitted=True,
        servers_in_room=("resident.org", "other.org:8448"),
        origin="resident.org",
    )


def test_minimal_send_join_response_parses() -> None:
    parsed = parse_send_join_response({"state": [], "auth_chain": []})
    assert parsed == SendJoinResponse((), (), None, False, None, None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([200, {"state": [], "auth_chain": []}], "JSON object"),  # the v1 response shape
        ({"auth_chain": []}, "state"),
        ({"state": []}, "auth_chain"),
        ({"state": {}, "auth_chain": []}, "state"),
        ({"state": [1], "auth_chain": []}, "state"),
        ({"state": [], "auth_chain": [None]}, "auth_chain"),
        ({"state": [], "auth_chain": [], "event": "x"}, "event"),
        ({"state": [], "auth_chain": [], "members_omitted": "yes"}, "members_omitted"),
        ({"state": [], "auth_chain": [], "members_omitted": True}, "servers_in_room"),
        (
            {"state": [], "auth_chain": [], "members_omitted": True, "servers_in_room": "a.org"},
            "servers_in_room",
        ),
        ({"state": [], "auth_chain": [], "servers_in_room": ["bad name!"]}, "servers_in_room"),
        ({"state": [], "auth_chain": [], "origin": 5}, "origin"),
    ],
)
def test_malformed_send_join_response_is_rejected(body: Any, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        parse_send_join_response(body)


def test_send_join_response_cannot_omit_members_without_servers() -> None:
    with pytest.raises(WireFormatError):
        build_send_join_response([], [], origin="r.org", members_omitted=True)


# --- the membership event sent -------------------------------------------------------------


def member_event(
    membership: str,
    sender: str = USER,
    state_key: str | None = None,
    *,
    room_version: Any = V10,
    type: str = "m.room.member",
) -> Event:
    pdu = make_pdu(
        room_version, "$ignored:joining.org", type, sender,
        state_key=state_key if state_key is not None else sender,
        content={"membership": membership}, room_id=ROOM,
        auth_events=["$create:resident.org"], prev_events=["$prev:resident.org"],
    )  # fmt: skip
    return Event.from_pdu(pdu, room_version)


@pytest.mark.parametrize("membership", ["join", "leave", "knock"])
def test_send_membership_event_accepted_when_it_is_what_the_path_says(membership: str) -> None:
    event = member_event(membership)
    check_membership_event(
        event, membership=membership, room_id=ROOM, event_id=event.event_id, origin="joining.org"
    )


@pytest.mark.parametrize(
    ("event", "change", "reason"),
    [
        (member_event("leave"), {}, "membership"),
        (member_event("join", type="m.room.message"), {}, "type"),
        (member_event("join", sender="@x:elsewhere.org"), {}, "not a user of"),
        (member_event("join", state_key="@other:joining.org"), {}, "state_key"),
        (member_event("join"), {"room_id": "!other:resident.org"}, "room"),
        (member_event("join"), {"event_id": "$other"}, "event ID"),
        (member_event("join"), {"origin": "evil.org"}, "not a user of"),
    ],
)
def test_send_join_event_checks(event: Event, change: dict[str, str], reason: str) -> None:
    args = {"room_id": ROOM, "event_id": event.event_id, "origin": "joining.org", **change}
    with pytest.raises(WireFormatError, match=reason):
        check_membership_event(event, membership="join", **args)


def test_v1_event_id_from_the_pdu_is_checked_against_the_path() -> None:
    event = member_event("join", room_version=V1)
    assert event.event_id == "$ignored:joining.org"
    check_membership_event(
        event,
        membership="join",
        room_id=ROOM,
        event_id="$ignored:joining.org",
        origin="joining.org",
    )


def test_invite_event_checks() -> None:
    invitee = "@guest:invited.org"
    event = member_event("invite", sender="@host:resident.org", state_key=invitee)
    args: dict[str, str] = {
        "room_id": ROOM,
        "event_id": event.event_id,
        "origin": "resident.org",
        "our_server_name": "invited.org",
    }
    check_invite_event(event, **args)
    with pytest.raises(WireFormatError, match="not a user of this server"):
        check_invite_event(event, **{**args, "our_server_name": "elsewhere.org"})
    with pytest.raises(WireFormatError, match="not a user of"):
        check_invite_event(event, **{**args, "origin": "evil.org"})
    join = member_event("join", sender=invitee)
    with pytest.raises(WireFormatError, match="membership"):
        check_invite_event(join, **{**args, "event_id": join.event_id})


# --- invite v2 and send_knock --------------------------------------------------------------


def test_invite_v2_round_trip() -> None:
    event = template("invite")
    state = [{"type": "m.room.create"}]
    body = build_invite_v2_request(event, V10, state)
    assert body == {"room_version": "10", "event": event, "invite_room_state": state}
    parsed = parse_invite_v2_request(body)
    assert (parsed.room_version, parsed.event, parsed.invite_room_state) == (
        "10",
        event,
        ({"type": "m.room.create"},),
    )
    assert parse_invite_response(build_invite_response(event)) == event


@pytest.mark.parametrize(
    "body",
    [
        {"event": {}},
        {"room_version": 10, "event": {}},
        {"room_version": "10"},
        {"room_version": "10", "event": {}, "invite_room_state": {}},
        {"room_version": "10", "event": {}, "invite_room_state": ["x"]},
    ],
)
def test_malformed_invite_request_is_rejected(body: Any) -> None:
    with pytest.raises(WireFormatError):
        parse_invite_v2_request(body)


def test_invite_room_state_needs_the_create_event_of_the_same_room() -> None:
    create = make_pdu(V10, "$c", "m.room.create", "@host:resident.org", state_key="", room_id=ROOM)
    name = make_pdu(V10, "$n", "m.room.name", "@host:resident.org", state_key="", room_id=ROOM,
                    auth_events=["$x:r"], prev_events=["$y:r"])  # fmt: skip
    events = check_invite_room_state([create, name], V10, ROOM)
    assert [e.type for e in events] == ["m.room.create", "m.room.name"]
    with pytest.raises(WireFormatError, match=r"m\.room\.create"):
        check_invite_room_state([name], V10, ROOM)
    with pytest.raises(WireFormatError, match="another room"):
        check_invite_room_state([create], V10, "!elsewhere:resident.org")
    with pytest.raises(WireFormatError, match="not a valid PDU"):
        check_invite_room_state([{"type": "m.room.create"}], V10, ROOM)


def test_v12_invite_room_state_uses_the_room_id_of_the_create_event() -> None:
    create = make_pdu(V12, "$c", "m.room.create", "@host:resident.org", state_key="", room_id=None)
    room_id = Event.from_pdu(create, V12).room_id
    assert check_invite_room_state([create], V12, room_id)[0].room_id == room_id


def test_send_knock_response_round_trip() -> None:
    state = [{"type": "m.room.create"}, {"type": "m.room.name"}]
    assert parse_send_knock_response(build_send_knock_response(state)) == tuple(state)
    for bad in ({}, {"knock_room_state": {}}, [], {"knock_room_state": [1]}):
        with pytest.raises(WireFormatError):
            parse_send_knock_response(bad)
