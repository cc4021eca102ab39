"""Authorisation rules for m.room.member events (rule 5 of `rooms/v12.md`; rule 4 of
`rooms/fragments/v8-auth-rules.md`, rule 5 of `v1-auth-rules.md`), third-party invites included.

Knock (v7+), restricted (v8+) and knock_restricted (v10+) are enabled by `RoomVersion` flags.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from federation.auth_error import AuthError
from federation.ids import is_valid_user_id, server_name_of
from federation.pdu import Event
from federation.room_state import (
    CREATE,
    THIRD_PARTY_INVITE,
    StateMap,
    join_rule,
    membership_of,
    named_power_level,
    room_creators,
    user_power_level,
)
from federation.signing import SignatureError, decode_verify_key, verify_json

JOIN_AUTHORISED_VIA = "join_authorised_via_users_server"


def check_membership(event: Event, state: StateMap) -> None:
    """Rule 5: raise `AuthError` unless the membership change is allowed."""
    membership = event.content.get("membership")
    if event.state_key is None or not isinstance(membership, str):  # 5.1
        raise AuthError("m.room.member needs a state_key and a content.membership")
    room_version = event.room_version
    if room_version.restricted_join_rule and JOIN_AUTHORISED_VIA in event.content:  # 5.2
        _check_authorising_server_signed(event)
    if membership == "join":  # 5.3
        _check_join(event, event.state_key, state)
    elif membership == "invite":  # 5.4
        _check_invite(event, event.state_key, state)
    elif membership == "leave":  # 5.5
        _check_leave(event, event.state_key, state)
    elif membership == "ban":  # 5.6
        _check_ban(event, event.state_key, state)
    elif membership == "knock" and room_version.knock_join_rule:  # 5.7
        _check_knock(event, event.state_key, state)
    else:  # 5.8
        raise AuthError(f"unknown membership {membership!r}")


def _check_authorising_server_signed(event: Event) -> None:
    """5.2: the authorising user's server must have signed the event.

    The signature itself is verified on receipt (S2S "Validating hashes and signatures");
    here it must be present.
    """
    authoriser = event.content[JOIN_AUTHORISED_VIA]
    if not isinstance(authoriser, str) or not is_valid_user_id(authoriser, historical=True):
        raise AuthError(f"{JOIN_AUTHORISED_VIA} is not a user ID")
    signatures = event.pdu.get("signatures")
    server_signatures = (
        signatures.get(server_name_of(authoriser)) if isinstance(signatures, Mapping) else None
    )
    if not isinstance(server_signatures, Mapping) or not server_signatures:
        raise AuthError(f"the event is not signed by the server of {authoriser}")


def _check_join(event: Event, target: str, state: StateMap) -> None:
    """5.3: membership `join`."""
    room_version = event.room_version
    if _is_creator_first_join(event, target, state):  # 5.3.1
        return
    if event.sender != target:  # 5.3.2
        raise AuthError(f"{event.sender} may not join on behalf of {target}")
    current = membership_of(state, target)
    if current == "ban":  # 5.3.3
        raise AuthError(f"{target} is banned from the room")
    rule = join_rule(state)
    if rule == "invite" or (rule == "knock" and room_version.knock_join_rule):  # 5.3.4
        if current in ("invite", "join"):
            return
        raise AuthError(f"{target} may not join an invite-only room without an invite")
    if (rule == "restricted" and room_version.restricted_join_rule) or (
        rule == "knock_restricted" and room_version.knock_restricted_join_rule
    ):  # 5.3.5
        if current in ("join", "invite"):
            return
        _check_join_authorised_via(event, state)
        return
    if rule == "public":  # 5.3.6
        return
    raise AuthError(f"join rule {rule!r} does not allow {target} to join")  # 5.3.7


def _is_creator_first_join(event: Event, target: str, state: StateMap) -> bool:
    """5.3.1: the only previous event is the create event, and the target is the creator
    (v1–v10: `content.creator`; v11+: the create event's `sender`)."""
    create = state.get((CREATE, ""))
    if create is None or event.prev_event_ids != (create.event_id,):
        return False
    if create.room_version.implicit_room_creator:
        return target == create.sender
    return target in room_creators(state)


def _check_join_authorised_via(event: Event, state: StateMap) -> None:
    """5.3.5.2: a restricted join needs a joined authorising user who may invite."""
    authoriser = event.content.get(JOIN_AUTHORISED_VIA)
    if not isinstance(authoriser, str):
        raise AuthError(f"a restricted join needs {JOIN_AUTHORISED_VIA}")
    if membership_of(state, authoriser) != "join":
        raise AuthError(f"authorising user {authoriser} is not joined to the room")
    if user_power_level(state, authoriser) < named_power_level(state, "invite"):
        raise AuthError(f"authorising user {authoriser} may not invite")


def _check_invite(event: Event, target: str, state: StateMap) -> None:
    """5.4: membership `invite`."""
    if "third_party_invite" in event.content:  # 5.4.1
        _check_third_party_invite(event, target, state)
        return
    if membership_of(state, event.sender) != "join":  # 5.4.2
        raise AuthError(f"{event.sender} is not joined to the room")
    if membership_of(state, target) in ("join", "ban"):  # 5.4.3
        current = membership_of(state, target)
        raise AuthError(f"{target} cannot be invited from membership {current!r}")
    sender_level = user_power_level(state, event.sender)
    if sender_level < named_power_level(state, "invite"):  # 5.4.4–5
        raise AuthError(f"{event.sender} may not invite (power level {sender_level})")


def _check_third_party_invite(event: Event, target: str, state: StateMap) -> None:
    """5.4.1: an invite that redeems an m.room.third_party_invite."""
    if membership_of(state, target) == "ban":  # 5.4.1.1
        raise AuthError(f"{target} is banned from the room")
    invite = event.content["third_party_invite"]
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    if not isinstance(signed, Mapping):  # 5.4.1.2
        raise AuthError("third_party_invite has no signed object")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):  # 5.4.1.3
        raise AuthError("third_party_invite.signed needs mxid and token")
    if mxid != target:  # 5.4.1.4
        raise AuthError("third_party_invite.signed.mxid does not match the state_key")
    third_party_invite = state.get((THIRD_PARTY_INVITE, token))
    if third_party_invite is None:  # 5.4.1.5
        raise AuthError(f"no m.room.third_party_invite with token {token!r}")
    if third_party_invite.sender != event.sender:  # 5.4.1.6
        raise AuthError("the invite's sender did not send the m.room.third_party_invite")
    for public_key in _third_party_public_keys(third_party_invite.content):  # 5.4.1.7
        if _signed_by_key(signed, public_key):
            return
    raise AuthError("third_party_invite.signed is not signed by the invite's keys")  # 5.4.1.8


def _third_party_public_keys(content: Mapping[str, Any]) -> Iterator[str]:
    """5.4.1.7: `public_key`, then each `public_keys[].public_key`."""
    if isinstance(content.get("public_key"), str):
        yield content["public_key"]
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        for entry in public_keys:
            if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str):
                yield entry["public_key"]


def _signed_by_key(signed: Mapping[str, Any], public_key: str) -> bool:
    """Whether any signature in `signed` verifies under `public_key` (ed25519)."""
    try:
        verify_key = decode_verify_key(public_key)
    except ValueError:
        return False
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    for server_name, key_signatures in signatures.items():
        if not isinstance(key_signatures, Mapping):
            continue
        for key_id in key_signatures:
            try:
                verify_json(signed, server_name, key_id, verify_key)
            except SignatureError:
                continue
            return True
    return False


def _check_leave(event: Event, target: str, state: StateMap) -> None:
    """5.5: membership `leave` (leaving, rejecting, retracting a knock, kicking, unbanning)."""
    if event.sender == target:  # 5.5.1
        current = membership_of(state, target)
        knocked = current == "knock" and event.room_version.knock_join_rule
        if current in ("invite", "join") or knocked:
            return
        raise AuthError(f"{target} cannot leave from membership {current!r}")
    if membership_of(state, event.sender) != "join":  # 5.5.2
        raise AuthError(f"{event.sender} is not joined to the room")
    sender_level = user_power_level(state, event.sender)
    ban_level = named_power_level(state, "ban")
    if membership_of(state, target) == "ban" and sender_level < ban_level:  # 5.5.3
        raise AuthError(f"{event.sender} may not unban (power level {sender_level})")
    if sender_level >= named_power_level(state, "kick") and (
        user_power_level(state, target) < sender_level
    ):  # 5.5.4
        return
    raise AuthError(f"{event.sender} may not kick {target}")  # 5.5.5


def _check_ban(event: Event, target: str, state: StateMap) -> None:
    """5.6: membership `ban`."""
    if membership_of(state, event.sender) != "join":  # 5.6.1
        raise AuthError(f"{event.sender} is not joined to the room")
    sender_level = user_power_level(state, event.sender)
    if sender_level >= named_power_level(state, "ban") and (
        user_power_level(state, target) < sender_level
    ):  # 5.6.2
        return
    raise AuthError(f"{event.sender} may not ban {target}")  # 5.6.3


def _check_knock(event: Event, target: str, state: StateMap) -> None:
    """5.7 (v7+): membership `knock`."""
    rule = join_rule(state)
    knock_restricted = rule == "knock_restricted" and event.room_version.knock_restricted_join_rule
    if rule != "knock" and not knock_restricted:  # 5.7.1
        raise AuthError(f"join rule {rule!r} does not allow knocking")
    if event.sender != target:  # 5.7.2
        raise AuthError(f"{event.sender} may not knock on behalf of {target}")
    if membership_of(state, target) in ("ban", "invite", "join"):  # 5.7.3–4
        raise AuthError(f"{target} cannot knock from membership {membership_of(state, target)}")
