"""Stored events as the rest of the server sees them: what the persist transaction writes
(`EventToPersist`, `PersistBatch`), what reads return (`EventRow`), the PDU text codec, and the
SQL fragments that select events (schema/0002_rooms_events.sql). Queries are in
homeserver/storage/events.py and homeserver/storage/room_reads.py.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import orjson

from federation.pdu import Event
from federation.room_versions import room_version
from homeserver.storage.rooms import ClientTransaction, CurrentStateDelta, NewRoom
from homeserver.storage.state import NewStateGroup


@dataclass(frozen=True, slots=True)
class EventToPersist:
    """One event with what the pipeline decided about it."""

    event: Event
    stream_ordering: int
    # State groups around the event; None for outliers (no known state).
    state_group_before: int | None = None
    state_group_after: int | None = None
    outlier: bool = False
    soft_failed: bool = False
    rejection_reason: str | None = None
    # The client request that created it (local events), remembered with its response.
    txn: ClientTransaction | None = None
    txn_response: str | None = None
    # An outlier m.room.member of a local user in a room we are not in (a received invite):
    # it sets local_current_membership although it is not current state.
    out_of_band_membership: bool = False

    @property
    def visible_to_clients(self) -> bool:
        """Part of the timeline clients see: not an outlier, not soft-failed, not rejected."""
        return not (self.outlier or self.soft_failed or self.rejection_reason is not None)


@dataclass(frozen=True, slots=True)
class PersistBatch:
    """Everything one transaction writes for a batch of events of one room."""

    room_id: str
    events: Sequence[EventToPersist]
    now_ms: int
    new_room: NewRoom | None = None
    state_groups: Sequence[NewStateGroup] = ()
    extremities_removed: Collection[str] = ()
    extremities_added: Collection[str] = ()
    current_state: CurrentStateDelta | None = None
    # target event ID → the redaction that applies to it (C-S "Redactions").
    redactions_applied: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRow:
    """A stored event with its internal metadata."""

    event: Event
    stream_ordering: int
    outlier: bool
    soft_failed: bool
    rejection_reason: str | None
    redacted_because: str | None
    txn_device_id: str | None
    txn_id: str | None

    @property
    def visible_to_clients(self) -> bool:
        """Outliers, soft-failed and rejected events are never served to clients in a
        timeline."""
        return not (self.outlier or self.soft_failed or self.rejection_reason is not None)


def encode_pdu(pdu: Mapping[str, Any]) -> str:
    try:
        return orjson.dumps(dict(pdu)).decode()
    except (TypeError, orjson.JSONEncodeError):
        # v1–v5 rooms allow integers beyond 64 bits, which orjson refuses.
        return json.dumps(dict(pdu), ensure_ascii=False, separators=(",", ":"))


def decode_pdu(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored PDU is not a JSON object")
    return value


EVENT_COLUMNS: Final = """
    e.event_id, e.json, r.room_version, e.stream_ordering, e.outlier, e.soft_failed,
    e.rejection_reason, e.redacted_because, e.txn_device_id, e.txn_id
"""
# Events clients may see in a timeline: not outliers, accepted, not soft-failed.
VISIBLE: Final = "NOT e.outlier AND NOT e.soft_failed AND e.rejection_reason IS NULL"
# Events clients may read as room state, once a state map (current state, or the state at an
# event) names them: outliers too (a joining server receives the room's state from send_join
# as outliers: S2S "Joining Rooms"), and soft-failed ones that state resolution kept; never
# rejected events (S2S "Rejection": they are not part of any state).
STATE_READABLE: Final = "e.rejection_reason IS NULL"


def row_to_event_row(row: asyncpg.Record) -> EventRow:
    event = Event.from_pdu(
        decode_pdu(row["json"]), room_version(row["room_version"]), event_id=row["event_id"]
    )
    return EventRow(
        event=event,
        stream_ordering=row["stream_ordering"],
        outlier=row["outlier"],
        soft_failed=row["soft_failed"],
        rejection_reason=row["rejection_reason"],
        redacted_because=row["redacted_because"],
        txn_device_id=row["txn_device_id"],
        txn_id=row["txn_id"],
    )
