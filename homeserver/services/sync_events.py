"""Events as /sync serves them: the client event format (C-S "Room event format",
`definitions/client_event_without_room_id.yaml`) and stripped state (C-S "Stripped state").

Pure: the caller hands in the stored event and what it knows about it (its redaction, the
transaction ID when the requesting device sent it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.pdu import Event
from federation.redaction import redact
from homeserver.services.filters import Filter, apply_event_fields

# C-S "Stripped state": the state a potential joiner is shown (create is required since v1.16).
STRIPPED_STATE_TYPES: Final = (
    "m.room.create",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.encryption",
)


@dataclass(frozen=True, slots=True)
class EventView:
    """A stored event with what the client format needs besides the PDU."""

    event: Event
    stream_ordering: int
    redacted_by: Event | None = None
    # unsigned.transaction_id: only for the device that sent the event.
    transaction_id: str | None = None
    # For state events: the state event this one replaced (unsigned.replaces_state,
    # unsigned.prev_content).
    replaces: Event | None = None


def client_event(view: EventView, now_ms: int, *, with_room_id: bool = False) -> dict[str, Any]:
    """The event in the client format."""
    event = view.event
    pdu: Mapping[str, Any] = event.pdu
    if view.redacted_by is not None:
        # C-S "Redactions": clients get the redacted form, with the redaction in unsigned.
        pdu = redact(pdu, event.room_version)
    body: dict[str, Any] = {
        "type": event.type,
        "content": dict(pdu.get("content", {})),
        "event_id": event.event_id,
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
    }
    if event.state_key is not None:
        body["state_key"] = event.state_key
    if with_room_id:
        body["room_id"] = event.room_id
    if "redacts" in pdu:  # room versions before 11 carry it at the top level
        body["redacts"] = pdu["redacts"]
    unsigned: dict[str, Any] = {"age": max(0, now_ms - event.origin_server_ts)}
    if view.transaction_id is not None:
        unsigned["transaction_id"] = view.transaction_id
    if view.replaces is not None:
        unsigned["replaces_state"] = view.replaces.event_id
        unsigned["prev_content"] = dict(view.replaces.content)
    if view.redacted_by is not None:
        unsigned["redacted_because"] = client_event(
            EventView(view.redacted_by, 0), now_ms, with_room_id=with_room_id
        )
    body["unsigned"] = unsigned
    return body


def format_events(
    views: Iterable[EventView], sync_filter: Filter, now_ms: int
) -> list[dict[str, Any]]:
    """Events as the filter asks: client or federation format, only `event_fields`."""
    if sync_filter.event_format == "federation":
        formatted = [dict(view.event.pdu) for view in views]
    else:
        formatted = [client_event(view, now_ms) for view in views]
    if sync_filter.event_fields is None:
        return formatted
    return [apply_event_fields(event, sync_filter.event_fields) for event in formatted]


def stripped_state_event(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Only `sender`, `type`, `state_key` and `content` (C-S "Stripped state"); None if the
    event does not have that shape (servers must prune what they receive)."""
    sender, event_type = event.get("sender"), event.get("type")
    state_key, content = event.get("state_key"), event.get("content")
    if not (
        isinstance(sender, str)
        and isinstance(event_type, str)
        and isinstance(state_key, str)
        and isinstance(content, Mapping)
    ):
        return None
    return {"type": event_type, "state_key": state_key, "sender": sender, "content": dict(content)}


def stripped_state(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [s for event in events if (s := stripped_state_event(event)) is not None]


def matches_view(event: Event) -> dict[str, Any]:
    """What filters look at: type, sender, room_id, content."""
    return {
        "type": event.type,
        "sender": event.sender,
        "room_id": event.room_id,
        "content": event.content,
    }
