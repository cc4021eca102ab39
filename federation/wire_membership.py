"""Request and response bodies of the Server-Server API membership handshakes: make/send
join, leave and knock, and invite v2.

Spec: S2S "Joining Rooms" (`joins-v1.yaml`, `joins-v2.yaml`), "Knocking upon a room"
(`knocks.yaml`), "Inviting to a room" (`invites-v2.yaml`), "Leaving Rooms" (`leaving-v1.yaml`,
`leaving-v2.yaml`).

Parsers check the shape of a body and raise `WireFormatError` (a 400 on our side, a malformed
response on theirs); the events inside are left to `federation.pdu` and the receipt checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_server_name, is_valid_user_id, server_name_of
from federation.pdu import Event, InvalidPdu
from federation.room_versions import RoomVersion
from federation.wire import WireFormatError, require_object, require_objects

MEMBER_EVENT_TYPE: Final = "m.room.member"


# --- make_join / make_leave / make_knock -------------------------------------------------------


def build_make_membership_response(
    room_version: RoomVersion | str, event_template: Mapping[str, Any]
) -> dict[str, Any]:
    """The 200 body of `/make_join`, `/make_leave` and `/make_knock`."""
    return {"room_version": _version_id(room_version), "event": dict(event_template)}


def parse_make_join_response(
    body: Any, *, room_id: str, user_id: str
) -> tuple[str, dict[str, Any]]:
    """`(room_version_id, event_template)` from a `/make_join` response (joins-v1.yaml)."""
    return _parse_make_membership_response(body, "join", room_id, user_id, version_required=False)


def parse_make_leave_response(
    body: Any, *, room_id: str, user_id: str
) -> tuple[str, dict[str, Any]]:
    """`(room_version_id, event_template)` from a `/make_leave` response (leaving-v1.yaml)."""
    return _parse_make_membership_response(body, "leave", room_id, user_id, version_required=False)


def parse_make_knock_response(
    body: Any, *, room_id: str, user_id: str
) -> tuple[str, dict[str, Any]]:
    """`(room_version_id, event_template)` from a `/make_knock` response (knocks.yaml)."""
    # Knocking exists from room version 7, so the response always names the version.
    return _parse_make_membership_response(body, "knock", room_id, user_id, version_required=True)


def _parse_make_membership_response(
    body: Any, membership: str, room_id: str, user_id: str, *, version_required: bool
) -> tuple[str, dict[str, Any]]:
    body = require_object(body, f"make_{membership} response")
    room_version_id = body.get("room_version")
    if room_version_id is None and not version_required:
        # "If not provided, the room version is assumed to be either "1" or "2"", whose
        # event formats are the same.
        room_version_id = "1"
    if not isinstance(room_version_id, str):
        raise WireFormatError("room_version must be a string")
    template = dict(require_object(body.get("event"), "event template"))
    # The caller "MUST verify" these before signing, else the response is malformed.
    _expect(template, "room_id", room_id)
    _expect(template, "sender", user_id)
    _expect(template, "state_key", user_id)
    _expect(template, "type", MEMBER_EVENT_TYPE)
    content = require_object(template.get("content"), "event template content")
    _expect(content, "membership", membership)
    return room_version_id, template


# --- send_join / send_leave / send_knock / invite: the event sent ------------------------------


def check_membership_event(
    event: Event, *, membership: str, room_id: str, event_id: str, origin: str
) -> None:
    """The checks a resident server applies to `/send_join`, `/send_leave` and `/send_knock`.

    From joins-v2/leaving-v2/knocks.yaml: type `m.room.member`, the expected `membership`, the
    sender a user of the origin server, `state_key` equal to the sender; plus the event must be
    the one the path names. Signatures are checked separately.
    """
    _check_path_ids(event, room_id, event_id)
    _check_member_event(event, membership)
    if not _user_on_server(event.sender, origin):
        raise WireFormatError(f"sender {event.sender} is not a user of {origin}")
    if event.state_key != event.sender:
        raise WireFormatError("state_key must equal the sender")


def check_invite_event(
    event: Event, *, room_id: str, event_id: str, origin: str, our_server_name: str
) -> None:
    """The checks an invited server applies to `/v2/invite` before signing (invites-v2.yaml)."""
    _check_path_ids(event, room_id, event_id)
    _check_member_event(event, "invite")
    if not _user_on_server(event.sender, origin):
        raise WireFormatError(f"sender {event.sender} is not a user of {origin}")
    if event.state_key is None or not _user_on_server(event.state_key, our_server_name):
        raise WireFormatError(f"state_key {event.state_key!r} is not a user of this server")


def _check_path_ids(event: Event, room_id: str, event_id: str) -> None:
    if event.room_id != room_id:
        raise WireFormatError(f"event is in room {event.room_id}, not {room_id}")
    if event.event_id != event_id:
        raise WireFormatError(f"event ID is {event.event_id}, not {event_id}")


def _check_member_event(event: Event, membership: str) -> None:
    if event.type != MEMBER_EVENT_TYPE:
        raise WireFormatError(f"event type must be {MEMBER_EVENT_TYPE}, not {event.type!r}")
    if event.membership != membership:
        raise WireFormatError(f"membership must be {membership!r}, not {event.membership!r}")


# --- send_join response (v2) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendJoinResponse:
    """The 200 body of `PUT /_matrix/federation/v2/send_join` (joins-v2.yaml)."""

    state: tuple[Mapping[str, Any], ...]
    auth_chain: tuple[Mapping[str, Any], ...]
    # The join event with the resident's signature (restricted joins); None if absent.
    event: Mapping[str, Any] | None
    members_omitted: bool
    # Required when members_omitted; the servers with joined members before the join.
    servers_in_room: tuple[str, ...] | None
    origin: str | None


def build_send_join_response(
    state: Sequence[Mapping[str, Any]],
    auth_chain: Sequence[Mapping[str, Any]],
    *,
    origin: str,
    event: Mapping[str, Any] | None = None,
    members_omitted: bool = False,
    servers_in_room: Sequence[str] | None = None,
) -> dict[str, Any]:
    if members_omitted and servers_in_room is None:
        raise WireFormatError("servers_in_room is required when members are omitted")
    body: dict[str, Any] = {
        "origin": origin,
        "state": [dict(pdu) for pdu in state],
        "auth_chain": [dict(pdu) for pdu in auth_chain],
        "members_omitted": members_omitted,
    }
    if event is not None:
        body["event"] = dict(event)
    if servers_in_room is not None:
        body["servers_in_room"] = list(servers_in_room)
    return body


def parse_send_join_response(body: Any) -> SendJoinResponse:
    body = require_object(body, "send_join response")
    event = body.get("event")
    if event is not None and not isinstance(event, Mapping):
        raise WireFormatError("event must be an object")
    members_omitted = body.get("members_omitted", False)
    if not isinstance(members_omitted, bool):
        raise WireFormatError("members_omitted must be a boolean")
    servers_in_room: tuple[str, ...] | None = None
    if body.get("servers_in_room") is not None:
        servers_in_room = _require_server_names(body["servers_in_room"], "servers_in_room")
    elif members_omitted:
        raise WireFormatError("servers_in_room is required when members_omitted is true")
    origin = body.get("origin")
    if origin is not None and not (isinstance(origin, str) and is_valid_server_name(origin)):
        raise WireFormatError("origin must be a server name")
    return SendJoinResponse(
        state=require_objects(body, "state", required=True),
        auth_chain=require_objects(body, "auth_chain", required=True),
        event=event,
        members_omitted=members_omitted,
        servers_in_room=servers_in_room,
        origin=origin,
    )


# --- send_knock response; invite v2 ------------------------------------------------------------


def build_send_knock_response(knock_room_state: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"knock_room_state": [dict(pdu) for pdu in knock_room_state]}


def parse_send_knock_response(body: Any) -> tuple[Mapping[str, Any], ...]:
    """The `knock_room_state` of a `/send_knock` response (knocks.yaml)."""
    return require_objects(
        require_object(body, "send_knock response"), "knock_room_state", required=True
    )


@dataclass(frozen=True, slots=True)
class InviteV2Request:
    """The body of `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`."""

    room_version: str
    event: Mapping[str, Any]
    invite_room_state: tuple[Mapping[str, Any], ...]


def build_invite_v2_request(
    event: Mapping[str, Any],
    room_version: RoomVersion | str,
    invite_room_state: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "room_version": _version_id(room_version),
        "event": dict(event),
        "invite_room_state": [dict(pdu) for pdu in invite_room_state],
    }


def parse_invite_v2_request(body: Any) -> InviteV2Request:
    body = require_object(body, "invite request")
    room_version_id = body.get("room_version")
    if not isinstance(room_version_id, str):
        raise WireFormatError("room_version must be a string")
    return InviteV2Request(
        room_version=room_version_id,
        event=require_object(body.get("event"), "event"),
        invite_room_state=require_objects(body, "invite_room_state", required=False),
    )


def check_invite_room_state(
    invite_room_state: Sequence[Mapping[str, Any]], room_version: RoomVersion, room_id: str
) -> tuple[Event, ...]:
    """The `invite_room_state` format rules added in v1.16 (invites-v2.yaml): each entry a PDU
    of the room version, in the invite's room, and `m.room.create` among them. Signatures are
    for the caller to check on the returned events."""
    events: list[Event] = []
    for pdu in invite_room_state:
        try:
            event = Event.from_pdu(pdu, room_version)
        except InvalidPdu as e:
            raise WireFormatError(f"invite_room_state entry is not a valid PDU: {e}") from None
        if event.room_id != room_id:
            raise WireFormatError(f"invite_room_state event {event.event_id} is in another room")
        events.append(event)
    if not any(event.type == "m.room.create" and event.state_key == "" for event in events):
        raise WireFormatError("invite_room_state has no m.room.create event")
    return tuple(events)


def build_invite_response(event: Mapping[str, Any]) -> dict[str, Any]:
    """The 200 body of `/v2/invite`: the event with the invited server's signature added."""
    return {"event": dict(event)}


def parse_invite_response(body: Any) -> Mapping[str, Any]:
    return require_object(require_object(body, "invite response").get("event"), "event")


# --- helpers -----------------------------------------------------------------------------------


def _version_id(room_version: RoomVersion | str) -> str:
    return room_version if isinstance(room_version, str) else room_version.identifier


def _require_server_names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(name, str) and is_valid_server_name(name) for name in value
    ):
        raise WireFormatError(f"{what} must be a list of server names")
    return tuple(value)


def _expect(body: Mapping[str, Any], key: str, expected: str) -> None:
    if body.get(key) != expected:
        raise WireFormatError(f"{key} is {body.get(key)!r}, expected {expected!r}")


def _user_on_server(user_id: str, server_name: str) -> bool:
    return is_valid_user_id(user_id, historical=True) and server_name_of(user_id) == server_name
