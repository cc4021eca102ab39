"""The authorisation rules, for every room version.

Spec: S2S "Auth events selection" and "Authorisation rules"; the rule lists of
`rooms/fragments/v1-auth-rules.md`, `v3-auth-rules.md`, `v8-auth-rules.md`, `rooms/v10.md`,
`rooms/v11.md` and `rooms/v12.md`. Each version's variant of a rule is chosen by a `RoomVersion`
flag, never by comparing version identifiers. Rule numbers in comments are those of `rooms/v12.md`
unless said otherwise.

The membership rules live in `auth_rules_member.py`, the power-levels rules in
`auth_rules_power.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from federation.auth_error import AuthError
from federation.auth_rules_member import check_membership
from federation.auth_rules_power import check_power_levels
from federation.ids import is_valid_user_id, server_name_of
from federation.pdu import Event
from federation.room_state import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    THIRD_PARTY_INVITE,
    StateKey,
    StateMap,
    membership_of,
    named_power_level,
    required_power_level,
    user_power_level,
)
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "StateKey",
    "auth_types_for_event",
    "check_auth_rules",
    "check_listed_auth_events",
]

ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """S2S "Auth events selection": the state keys an event's `auth_events` may cite.

    Empty for m.room.create. The create event is selected up to v11, never in v12.
    """
    if event_type == CREATE:
        return []
    selected: list[StateKey] = []
    if not room_version.room_id_from_create_event:
        selected.append((CREATE, ""))
    selected += [(POWER_LEVELS, ""), (MEMBER, sender)]
    if event_type == MEMBER:
        if state_key is not None:
            selected.append((MEMBER, state_key))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            selected.append((JOIN_RULES, ""))
        if membership == "invite":
            token = _third_party_invite_token(content)
            if token is not None:
                selected.append((THIRD_PARTY_INVITE, token))
        if membership == "join" and room_version.restricted_join_rule:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                selected.append((MEMBER, authoriser))
    return list(dict.fromkeys(selected))  # the sender may be the target or the authoriser


def _third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    invite = content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    token = signed.get("token") if isinstance(signed, Mapping) else None
    return token if isinstance(token, str) else None


def check_listed_auth_events(
    event: Event, auth_events: Sequence[Event], rejected_event_ids: Collection[str]
) -> None:
    """Rule 3 (v1–v11: rule 2), "Considering the event's `auth_events`".

    `auth_events` are the events `event` lists; `rejected_event_ids` those among them (or at all)
    that were rejected on receipt.
    """
    room_version = event.room_version
    allowed = set(
        auth_types_for_event(room_version, event.type, event.sender, event.state_key, event.content)
    )
    seen: set[StateKey] = set()
    for auth_event in auth_events:
        if auth_event.event_id not in event.auth_event_ids:
            raise AuthError(f"{auth_event.event_id} is not among the event's auth_events")
        if auth_event.state_key is None:
            raise AuthError(f"auth event {auth_event.event_id} is not a state event")
        key = auth_event.state_tuple
        if key in seen:  # 3.1
            raise AuthError(f"duplicate auth events for {key}")
        seen.add(key)
        if key == (CREATE, "") and room_version.room_id_from_create_event:  # 3.2, v12 note
            raise AuthError("the m.room.create event must not be listed in auth_events")
        if key not in allowed:  # 3.2
            raise AuthError(f"auth event {auth_event.event_id} for {key} is not expected")
        if auth_event.event_id in rejected_event_ids:  # 3.3
            raise AuthError(f"auth event {auth_event.event_id} was rejected")
        if auth_event.room_id != event.room_id:  # 3.5
            raise AuthError(f"auth event {auth_event.event_id} is from another room")
    if (
        event.type != CREATE
        and not room_version.room_id_from_create_event
        and (CREATE, "") not in seen
    ):  # v1–v11 2.4
        raise AuthError("no m.room.create event among the auth_events")


def check_auth_rules(event: Event, auth_state: StateMap) -> None:
    """Raise `AuthError` unless the authorisation rules allow `event` given `auth_state`.

    `auth_state` maps `(type, state_key)` to events: the event's auth events, or the state
    before it, or the current state. It must include the m.room.create event, also in v12 where
    the create event is not listed in `auth_events`; the caller hands in only an accepted (not
    rejected) create event (v12 rule 2). The checks on the listed auth events themselves (rule 3)
    are `check_listed_auth_events`. Signatures are assumed checked on receipt; for
    `join_authorised_via_users_server` only the presence of that server's signature is checked.
    """
    room_version = event.room_version
    if event.type == CREATE:
        _check_create(event)  # 1
        return
    create = auth_state.get((CREATE, ""))
    if create is None:
        raise AuthError("no m.room.create event in the auth state")
    _check_room_of_create(event, create)  # 2
    _check_federate(event, create)  # 4
    if room_version.special_case_aliases_auth and event.type == ALIASES:  # v1–v5 rule 4
        _check_aliases(event)
        return
    if event.type == MEMBER:  # 5
        check_membership(event, auth_state)
        return
    if membership_of(auth_state, event.sender) != "join":  # 6
        raise AuthError(f"{event.sender} is not joined to the room")
    sender_level = user_power_level(auth_state, event.sender)
    if event.type == THIRD_PARTY_INVITE:  # 7
        if sender_level < named_power_level(auth_state, "invite"):
            raise AuthError(f"{event.sender} may not invite (power level {sender_level})")
        return
    required = required_power_level(auth_state, event.type, event.is_state)  # 8
    if required > sender_level:
        raise AuthError(
            f"{event.type} requires power level {required}, {event.sender} has {sender_level}"
        )
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:  # 9
        raise AuthError(f"{event.sender} may not set state keyed by {event.state_key}")
    if event.type == POWER_LEVELS:  # 10
        check_power_levels(event, auth_state)
        return
    if room_version.redaction_auth_rule and event.type == REDACTION:  # v1–v2 rule 11
        _check_redaction(event, auth_state)
    # 11: otherwise, allow.


def _check_create(event: Event) -> None:
    """Rule 1: the m.room.create event."""
    room_version = event.room_version
    if event.prev_event_ids:  # 1.1
        raise AuthError("m.room.create must not have prev_events")
    if room_version.room_id_from_create_event:
        if "room_id" in event.pdu:  # 1.2 (v12)
            raise AuthError("m.room.create must not have a room_id in this room version")
    elif _domain(event.room_id) != event.sender_domain:  # 1.2 (v1–v11)
        raise AuthError("the room ID's domain does not match the sender's domain")
    if "room_version" in event.content:  # 1.3
        version = event.content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"unknown room version {version!r}")
    if not room_version.implicit_room_creator and "creator" not in event.content:  # v1–v10 1.4
        raise AuthError("m.room.create content has no creator")
    if room_version.privileged_room_creators and "additional_creators" in event.content:  # 1.4
        additional = event.content["additional_creators"]
        if not isinstance(additional, list) or not all(
            isinstance(user, str) and is_valid_user_id(user, historical=True) for user in additional
        ):
            raise AuthError("additional_creators must be an array of user IDs")


def _check_room_of_create(event: Event, create: Event) -> None:
    """Rule 2 (v12): the room ID is the create event's ID with `!`. Before v12 the create
    event in the auth state must simply belong to the same room."""
    if create.room_version != event.room_version:
        raise AuthError("the m.room.create event is of another room version")
    if event.room_version.room_id_from_create_event:
        if event.room_id != "!" + create.event_id[1:]:
            raise AuthError(f"room ID {event.room_id} is not that of {create.event_id}")
    elif create.room_id != event.room_id:
        raise AuthError("the m.room.create event belongs to another room")


def _check_federate(event: Event, create: Event) -> None:
    """Rule 4: `m.federate: false` keeps out senders of other servers than the creator's."""
    federates = create.content.get("m.federate", True) is not False
    if not federates and event.sender_domain != create.sender_domain:
        raise AuthError("the room does not federate with other servers (m.federate)")


def _check_aliases(event: Event) -> None:
    """v1–v5 rule 4: m.room.aliases, keyed by the sender's own server."""
    if event.state_key is None:
        raise AuthError("m.room.aliases must have a state_key")
    if event.state_key != event.sender_domain:
        raise AuthError("m.room.aliases state_key must be the sender's server")


def _check_redaction(event: Event, auth_state: StateMap) -> None:
    """v1–v2 rule 11: redact level, or the redaction and its target share an event ID domain."""
    if user_power_level(auth_state, event.sender) >= named_power_level(auth_state, "redact"):
        return
    if event.redacts is not None:
        target_domain = _domain(event.redacts)
        if target_domain is not None and target_domain == _domain(event.event_id):
            return
    raise AuthError(f"{event.sender} may not redact {event.redacts}")


def _domain(identifier: str) -> str | None:
    try:
        return server_name_of(identifier)
    except ValueError:
        return None
