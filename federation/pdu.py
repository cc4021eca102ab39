"""The event format (PDU) per room version: parse, validate, and an immutable `Event`.

Spec: S2S "PDUs", `data/api/server-server/definitions/pdu_v*.yaml`, and the
"Event format" section of each room version.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from federation.canonical_json import CanonicalJsonError, check_json_values, encode_canonical_json
from federation.hashing import compute_event_id
from federation.ids import EventId, RoomId, UserId, is_valid_event_id, is_valid_user_id
from federation.room_versions import RoomVersion

# C-S "Size limits": the whole event, canonical JSON, at most 65,536 bytes.
MAX_PDU_SIZE: Final = 65_536
# C-S "Size limits": type, state_key, sender, room_id, event_id at most 255 bytes.
MAX_ID_BYTES: Final = 255
MAX_PREV_EVENTS: Final = 20
MAX_AUTH_EVENTS: Final = 10
MAX_DEPTH: Final = 2**63 - 1
# Top-level strings that many events repeat (the same room, senders, types, members): an Event
# keeps interned copies, so events parsed from separate JSON texts share them (docs/memory.md).
_SHARED_STRING_KEYS: Final = ("room_id", "sender", "type", "state_key", "origin")


class InvalidPdu(ValueError):
    """The PDU does not follow the event format of its room version (dropped on receipt)."""


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """A validated PDU. Immutable: never mutate `pdu` or `content`."""

    event_id: EventId
    room_version: RoomVersion
    room_id: RoomId
    sender: UserId
    type: str
    state_key: str | None
    content: Mapping[str, Any]
    prev_event_ids: tuple[EventId, ...]
    auth_event_ids: tuple[EventId, ...]
    depth: int
    origin_server_ts: int
    redacts: EventId | None
    pdu: Mapping[str, Any]

    @staticmethod
    def from_pdu(
        pdu: Mapping[str, Any], room_version: RoomVersion, *, event_id: str | None = None
    ) -> Event:
        """Validate `pdu` for `room_version` and wrap it.

        `event_id` overrides the computed ID; only for hand-built test graphs, where IDs are
        names rather than hashes.
        """
        validate_pdu(pdu, room_version)
        if event_id is None:
            event_id = compute_event_id(pdu, room_version)
        return Event.from_validated_pdu(pdu, room_version, event_id)

    @staticmethod
    def from_validated_pdu(
        pdu: Mapping[str, Any], room_version: RoomVersion, event_id: str
    ) -> Event:
        """Wrap a PDU that `validate_pdu` already accepted, with its computed `event_id`
        (batch receipt checks validate and hash each PDU once, federation/pdu_receipt.py).

        The Event keeps its own copy of the PDU, whose repeated strings (`_SHARED_STRING_KEYS`
        and the referenced event IDs) are interned."""
        copy = _with_shared_strings(pdu)
        prev_event_ids = _referenced_ids(pdu["prev_events"], room_version)
        auth_event_ids = _referenced_ids(pdu["auth_events"], room_version)
        copy["prev_events"] = _references_like(pdu["prev_events"], prev_event_ids, room_version)
        copy["auth_events"] = _references_like(pdu["auth_events"], auth_event_ids, room_version)
        return Event(
            event_id=EventId(_shared(event_id)),
            room_version=room_version,
            room_id=RoomId(_shared(_room_id_of(copy, event_id, room_version))),
            sender=UserId(copy["sender"]),
            type=copy["type"],
            state_key=copy.get("state_key"),
            content=MappingProxyType(pdu["content"]),
            prev_event_ids=prev_event_ids,
            auth_event_ids=auth_event_ids,
            depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"],
            redacts=_redacts_of(pdu, room_version),
            pdu=MappingProxyType(copy),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r} from {self.sender}>"

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_tuple(self) -> tuple[str, str]:
        """`(type, state_key)`; only for state events."""
        if self.state_key is None:
            raise ValueError(f"{self.event_id} is not a state event")
        return (self.type, self.state_key)

    @property
    def sender_domain(self) -> str:
        return self.sender.split(":", 1)[1]

    @property
    def membership(self) -> str | None:
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict[str, Any]:
        """A plain (shallow) copy of the PDU as sent over federation."""
        return dict(self.pdu)


def validate_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> None:
    """Raise `InvalidPdu` if `pdu` breaks the event format of `room_version`."""
    if not isinstance(pdu, Mapping):
        raise InvalidPdu("PDU must be a JSON object")
    _require(pdu, "type", str)
    _require(pdu, "sender", str)
    _require(pdu, "content", dict)
    _require(pdu, "depth", int)
    _require(pdu, "origin_server_ts", int)
    _require(pdu, "prev_events", list)
    _require(pdu, "auth_events", list)
    _require(pdu, "hashes", dict)
    _require(pdu, "signatures", dict)
    is_v12_create = room_version.room_id_from_create_event and pdu["type"] == "m.room.create"
    if is_v12_create:
        if "room_id" in pdu:
            raise InvalidPdu("m.room.create must not have a room_id in this room version")
    else:
        _require(pdu, "room_id", str)
        _check_length(pdu, "room_id")
        # Only the sigil: the auth rules check the room ID against the create event.
        if not pdu["room_id"].startswith("!"):
            raise InvalidPdu(f"invalid room_id {pdu['room_id']!r}")
    if room_version.has_event_id_field:
        _require(pdu, "event_id", str)
        _check_length(pdu, "event_id")
    if "state_key" in pdu:
        _require(pdu, "state_key", str)
        _check_length(pdu, "state_key")
    _check_length(pdu, "type")
    _check_length(pdu, "sender")
    if not is_valid_user_id(pdu["sender"], historical=True):
        raise InvalidPdu(f"invalid sender {pdu['sender']!r}")
    if isinstance(pdu["depth"], bool) or not 0 <= pdu["depth"] <= MAX_DEPTH:
        raise InvalidPdu("depth out of range")
    if not isinstance(pdu["hashes"].get("sha256"), str):
        raise InvalidPdu("hashes.sha256 missing")
    if len(pdu["prev_events"]) > MAX_PREV_EVENTS:
        raise InvalidPdu(f"more than {MAX_PREV_EVENTS} prev_events")
    if len(pdu["auth_events"]) > MAX_AUTH_EVENTS:
        raise InvalidPdu(f"more than {MAX_AUTH_EVENTS} auth_events")
    _referenced_ids(pdu["prev_events"], room_version)
    _referenced_ids(pdu["auth_events"], room_version)
    _redacts_of(pdu, room_version)
    try:
        check_json_values(pdu, strict=room_version.strict_canonical_json)
        size = len(encode_canonical_json(pdu))
    except CanonicalJsonError as e:
        raise InvalidPdu(str(e)) from None
    if size > MAX_PDU_SIZE:
        raise InvalidPdu(f"PDU is {size} bytes, over {MAX_PDU_SIZE}")


def _require(pdu: Mapping[str, Any], key: str, kind: type) -> None:
    value = pdu.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidPdu(f"{key!r} must be a {kind.__name__}")


def _check_length(pdu: Mapping[str, Any], key: str) -> None:
    if len(pdu[key].encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InvalidPdu(f"{key!r} is longer than {MAX_ID_BYTES} bytes")


def _with_shared_strings(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of `pdu` whose `_SHARED_STRING_KEYS` values are interned strings."""
    copy = dict(pdu)
    for key in _SHARED_STRING_KEYS:
        value = copy.get(key)
        if type(value) is str:  # sys.intern takes exact `str` only
            copy[key] = sys.intern(value)
    return copy


def _shared(value: str) -> str:
    """The interned copy of `value` (`sys.intern` takes exact `str` only)."""
    return sys.intern(value) if type(value) is str else value


def _references_like(
    refs: Sequence[Any], ids: tuple[EventId, ...], room_version: RoomVersion
) -> list[Any]:
    """`refs` (prev_events/auth_events) rebuilt around the interned `ids`: same JSON value."""
    if room_version.has_event_id_field:
        return [[event_id, ref[1]] for event_id, ref in zip(ids, refs, strict=True)]
    return list(ids)


def _referenced_ids(refs: Sequence[Any], room_version: RoomVersion) -> tuple[EventId, ...]:
    """prev_events/auth_events: `[id, {hashes}]` pairs in v1–v2, plain IDs from v3 (interned:
    the same create, power-levels and member events are referenced again and again)."""
    ids: list[EventId] = []
    for ref in refs:
        if room_version.has_event_id_field:
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)):
                raise InvalidPdu("event references must be [event_id, hashes] pairs")
            ref = ref[0]
        if not isinstance(ref, str) or not is_valid_event_id(ref):
            raise InvalidPdu(f"invalid event reference {ref!r}")
        ids.append(EventId(_shared(ref)))
    return tuple(ids)


def _redacts_of(pdu: Mapping[str, Any], room_version: RoomVersion) -> EventId | None:
    if pdu.get("type") != "m.room.redaction":
        return None
    # v11 moved `redacts` into content; servers still read the top-level key for older rooms.
    source = pdu["content"] if room_version.redacts_in_content else pdu
    redacts = source.get("redacts")
    if redacts is None:
        return None
    if not isinstance(redacts, str) or not is_valid_event_id(redacts):
        raise InvalidPdu("redacts must be an event ID")
    return EventId(redacts)


def _room_id_of(pdu: Mapping[str, Any], event_id: str, room_version: RoomVersion) -> str:
    if room_version.room_id_from_create_event and pdu["type"] == "m.room.create":
        # v12: the room ID is the create event's ID with the `!` sigil.
        return "!" + event_id[1:]
    room_id: str = pdu["room_id"]
    return room_id
