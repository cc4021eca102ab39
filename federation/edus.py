"""Ephemeral Data Units: shape checks and typed forms of the EDUs the spec defines.

Spec: S2S "EDUs" (`definitions/edu.yaml`), "Typing Notifications", "Presence", "Receipts",
"Device Management", "End-to-End Encryption", "Send-to-device messaging"
(`definitions/event-schemas/m.*.yaml`).

EDUs are handled one at a time: `parse_edu` raises `WireFormatError` for a malformed known EDU
(the receiver drops it) and returns None for a type it does not know (ignored). Every EDU here
speaks for users of the sending server only; `restrict_edu_to_origin` enforces that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_user_id, server_name_of
from federation.wire import WireFormatError

PRESENCE_STATES: Final = frozenset({"online", "unavailable", "offline"})


@dataclass(frozen=True, slots=True)
class TypingEdu:
    """`m.typing`: a user's typing state in a room."""

    room_id: str
    user_id: str
    typing: bool


@dataclass(frozen=True, slots=True)
class Receipt:
    """One user's receipt in one room, from an `m.receipt` EDU."""

    room_id: str
    receipt_type: str
    user_id: str
    event_ids: tuple[str, ...]
    ts: int
    thread_id: str | None


@dataclass(frozen=True, slots=True)
class ReceiptEdu:
    """`m.receipt`: receipts grouped by room; only the entries listed are updated."""

    receipts: tuple[Receipt, ...]


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    user_id: str
    presence: str
    # Required by the spec's schema, but Synapse omits it for users never active: tolerate.
    last_active_ago: int | None
    status_msg: str | None
    currently_active: bool


@dataclass(frozen=True, slots=True)
class PresenceEdu:
    """`m.presence`: presence updates for users of the sending server."""

    push: tuple[PresenceUpdate, ...]


@dataclass(frozen=True, slots=True)
class DirectToDeviceEdu:
    """`m.direct_to_device`: to-device messages, by user ID then device ID (or `*`)."""

    sender: str
    type: str
    message_id: str
    messages: Mapping[str, Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class DeviceListUpdateEdu:
    """`m.device_list_update`: one device of a user changed (or was deleted)."""

    user_id: str
    device_id: str
    stream_id: int
    prev_id: tuple[int, ...]
    deleted: bool
    device_display_name: str | None
    keys: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class SigningKeyUpdateEdu:
    """`m.signing_key_update`: a user's cross-signing keys changed."""

    user_id: str
    master_key: Mapping[str, Any] | None
    self_signing_key: Mapping[str, Any] | None


ParsedEdu = (
    TypingEdu
    | ReceiptEdu
    | PresenceEdu
    | DirectToDeviceEdu
    | DeviceListUpdateEdu
    | SigningKeyUpdateEdu
)


def edu_user_belongs_to_origin(user_id: str, origin: str) -> bool:
    """Whether `user_id` is a user of the server `origin`: EDUs about a user are accepted only
    from that user's own server (S2S "Typing Notifications": "a user belonging to the sending
    server"; presence and receipts are "for users of the sending homeserver")."""
    return is_valid_user_id(user_id, historical=True) and server_name_of(user_id) == origin


def parse_edu(edu: Any) -> ParsedEdu | None:
    """The typed form of one EDU from a transaction; None for EDU types we do not know."""
    if not isinstance(edu, Mapping):
        raise WireFormatError("EDU must be a JSON object")
    edu_type = edu.get("edu_type")
    if not isinstance(edu_type, str):
        raise WireFormatError("edu_type must be a string")
    parser = _PARSERS.get(edu_type)
    if parser is None:
        return None
    return parser(_object(edu.get("content"), f"{edu_type} content"))


def restrict_edu_to_origin(edu: ParsedEdu, origin: str) -> ParsedEdu | None:
    """Keep only what `origin` may speak for: drop entries about other servers' users from
    multi-user EDUs, and the whole EDU (None) if its one user is not from `origin`."""
    if isinstance(edu, ReceiptEdu):
        receipts = tuple(r for r in edu.receipts if edu_user_belongs_to_origin(r.user_id, origin))
        return dataclasses.replace(edu, receipts=receipts) if receipts else None
    if isinstance(edu, PresenceEdu):
        push = tuple(p for p in edu.push if edu_user_belongs_to_origin(p.user_id, origin))
        return dataclasses.replace(edu, push=push) if push else None
    user_id = edu.sender if isinstance(edu, DirectToDeviceEdu) else edu.user_id
    return edu if edu_user_belongs_to_origin(user_id, origin) else None


def build_edu(edu_type: str, content: Mapping[str, Any]) -> dict[str, Any]:
    return {"edu_type": edu_type, "content": dict(content)}


def _parse_typing(content: Mapping[str, Any]) -> TypingEdu:
    return TypingEdu(
        room_id=_str(content, "room_id"),
        user_id=_str(content, "user_id"),
        typing=_bool(content, "typing"),
    )


def _parse_receipt(content: Mapping[str, Any]) -> ReceiptEdu:
    receipts: list[Receipt] = []
    for room_id, by_type in content.items():
        by_type = _object(by_type, f"receipts for {room_id}")
        # The spec defines `m.read` only; private receipts must never be federated.
        if by_type.get("m.read") is None:
            continue
        read = _object(by_type["m.read"], f"m.read receipts for {room_id}")
        for user_id, receipt in read.items():
            receipt = _object(receipt, f"receipt of {user_id}")
            event_ids = receipt.get("event_ids")
            if not (
                isinstance(event_ids, list)
                and event_ids
                and all(isinstance(event_id, str) for event_id in event_ids)
            ):
                raise WireFormatError("receipt event_ids must be a non-empty list of strings")
            data = _object(receipt.get("data"), "receipt data")
            receipts.append(
                Receipt(
                    room_id=room_id,
                    receipt_type="m.read",
                    user_id=user_id,
                    event_ids=tuple(event_ids),
                    ts=_int(data, "ts"),
                    thread_id=_optional_str(data, "thread_id"),
                )
            )
    return ReceiptEdu(receipts=tuple(receipts))


def _parse_presence(content: Mapping[str, Any]) -> PresenceEdu:
    push = content.get("push")
    if not isinstance(push, list):
        raise WireFormatError("presence push must be a list")
    updates: list[PresenceUpdate] = []
    for entry in push:
        entry = _object(entry, "presence update")
        presence = _str(entry, "presence")
        if presence not in PRESENCE_STATES:
            raise WireFormatError(f"unknown presence {presence!r}")
        currently_active = entry.get("currently_active", False)
        updates.append(
            PresenceUpdate(
                user_id=_str(entry, "user_id"),
                presence=presence,
                last_active_ago=_optional_int(entry, "last_active_ago"),
                status_msg=_optional_str(entry, "status_msg"),
                currently_active=currently_active if isinstance(currently_active, bool) else False,
            )
        )
    return PresenceEdu(push=tuple(updates))


def _parse_direct_to_device(content: Mapping[str, Any]) -> DirectToDeviceEdu:
    messages = _object(content.get("messages"), "messages")
    for user_id, devices in messages.items():
        devices = _object(devices, f"messages for {user_id}")
        for device_id, message in devices.items():
            _object(message, f"message for {user_id} {device_id}")
    return DirectToDeviceEdu(
        sender=_str(content, "sender"),
        type=_str(content, "type"),
        message_id=_str(content, "message_id"),
        messages=messages,
    )


def _parse_device_list_update(content: Mapping[str, Any]) -> DeviceListUpdateEdu:
    prev_id = content.get("prev_id", [])
    if prev_id is None:
        prev_id = []
    if not isinstance(prev_id, list) or not all(_is_int(item) for item in prev_id):
        raise WireFormatError("prev_id must be a list of integers")
    deleted = content.get("deleted", False)
    if not isinstance(deleted, bool):
        raise WireFormatError("deleted must be a boolean")
    keys = content.get("keys")
    return DeviceListUpdateEdu(
        user_id=_str(content, "user_id"),
        device_id=_str(content, "device_id"),
        stream_id=_int(content, "stream_id"),
        prev_id=tuple(prev_id),
        deleted=deleted,
        device_display_name=_optional_str(content, "device_display_name"),
        keys=None if keys is None else _object(keys, "keys"),
    )


def _parse_signing_key_update(content: Mapping[str, Any]) -> SigningKeyUpdateEdu:
    master_key = content.get("master_key")
    self_signing_key = content.get("self_signing_key")
    return SigningKeyUpdateEdu(
        user_id=_str(content, "user_id"),
        master_key=None if master_key is None else _object(master_key, "master_key"),
        self_signing_key=(
            None if self_signing_key is None else _object(self_signing_key, "self_signing_key")
        ),
    )


_PARSERS: Final[Mapping[str, Callable[[Mapping[str, Any]], ParsedEdu]]] = {
    "m.typing": _parse_typing,
    "m.receipt": _parse_receipt,
    "m.presence": _parse_presence,
    "m.direct_to_device": _parse_direct_to_device,
    "m.device_list_update": _parse_device_list_update,
    "m.signing_key_update": _parse_signing_key_update,
}


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WireFormatError(f"{what} must be a JSON object")
    return value


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise WireFormatError(f"{key} must be a string")
    return value


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise WireFormatError(f"{key} must be a string")
    return value


def _optional_int(body: Mapping[str, Any], key: str) -> int | None:
    return None if body.get(key) is None else _int(body, key)


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireFormatError(f"{key} must be an integer")
    return value


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise WireFormatError(f"{key} must be a boolean")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
