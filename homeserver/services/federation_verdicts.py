"""What the receipt checks of a PDU conclude, and the step-4 check on its listed auth events.

S2S "Checks performed on receipt of a PDU": the outcome per PDU of a transaction (`PduResult`),
the verdict of steps 4–6 (`Verdict`), and step 4 itself once the listed auth events are at
hand (`auth_against_listed`). Used by homeserver/services/federation_inbound.py (one PDU) and
homeserver/services/federation_inbound_batch.py (the PDUs of one room in a transaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.auth_rules import AuthError, check_auth_rules
from federation.auth_rules import check_listed_auth_events as check_listed
from federation.hashing import compute_event_id
from federation.pdu import Event
from federation.room_state import CREATE, StateKey
from federation.room_versions import RoomVersion

StateIds = Mapping[StateKey, str]


class EventNotProcessed(Exception):
    """What the event needs (auth events, prior state) could not be had: not stored."""


@dataclass(frozen=True, slots=True)
class PduResult:
    """The outcome for one PDU of a transaction; `event_id` None when it could not be known."""

    event_id: str | None
    error: str | None = None
    # Failed for a reason of ours (a bug, the database): a retry of the transaction should
    # process it again, so the transaction's response is not remembered.
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Steps 4–6: the state before the event, and whether it is rejected or soft failed."""

    state_before: StateIds
    rejected_reason: str | None
    soft_failed: bool

    @property
    def accepted(self) -> bool:
        return self.rejected_reason is None and not self.soft_failed


@dataclass(frozen=True, slots=True)
class Known:
    """An event usable as an auth event, and whether it was rejected."""

    event: Event
    rejected: bool



def create_event_id(event: Event) -> str:
    """v12: the ID of the room's create event, from the room ID."""
    return "$" + event.room_id[1:]


def auth_against_listed(event: Event, known: Mapping[str, Known]) -> str | None:
    """Step 4 with the auth events at hand (`known`; in v12 also the create event, which is
    never listed but which the rules still read); returns the rejection reason."""
    auth_events = [known[i].event for i in event.auth_event_ids if i in known]
    rejected = {i for i, k in known.items() if k.rejected}
    auth_state = {e.state_tuple: e for e in auth_events if e.is_state}
    if event.room_version.room_id_from_create_event:
        create = known.get(create_event_id(event))
        if create is not None and not create.rejected:
            auth_state[(CREATE, "")] = create.event
    try:
        check_listed(event, auth_events, rejected)
        check_auth_rules(event, auth_state)
    except AuthError as exc:
        return exc.reason
    return None


def event_id_or_none(pdu: Mapping[str, Any], room_version: RoomVersion) -> str | None:
    """The PDU's event ID, or None when it cannot be computed (a malformed PDU)."""
    try:
        return compute_event_id(pdu, room_version)
    except Exception:  # any malformed PDU: the ID is simply unknown
        return None
