"""The room state a `/send_join` answers: checked once, kept in memory, stored with our join.

S2S "Joining Rooms": the resident server answers the state of the room before our join event
and the auth chain of that state and of the join. Each of those events goes through the receipt
checks like any other (S2S "Checks performed on receipt of a PDU"):
1–3. format, signatures, content hash, for each distinct event once
     (homeserver/services/batch_receipt.py): dropped, or redacted on a hash mismatch;
4.   the auth rules against the event's listed auth events, auth events first. The auth chain
     is complete, so this runs in memory over a dict; events that fail are kept as rejected,
     events whose auth events are missing altogether are left out.
The accepted state events are the state before our join, which must include the room's
m.room.create event of the negotiated room version. Our join is then checked against that
state (step 5) and everything is stored in one transaction: the state and auth chain as
outliers, then the join with that state before it (`JoinState.to_persist`).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from federation.auth_rules import check_listed_auth_events as check_listed
from federation.pdu import Event
from federation.room_state import CREATE, StateKey
from federation.room_versions import RoomVersion
from homeserver.services.batch_receipt import check_received_pdus
from homeserver.services.event_pipeline import RemoteEvent
from homeserver.services.federation_checks import EventKeyring
from homeserver.storage.events import EventsStore

logger = logging.getLogger(__name__)

# How many drop reasons are logged one by one for a response; the rest are counted.
LOGGED_DROPS: Final = 5


class InvalidJoinState(Exception):
    """The answered state cannot be the room's: no valid create event of its version."""


@dataclass(frozen=True, slots=True)
class Known:
    """An event usable as an auth event, and whether it was rejected."""

    event: Event
    rejected: bool


@dataclass(frozen=True, slots=True)
class JoinState:
    """The checked `/send_join` answer."""

    # The accepted state events: the room's state before our join.
    state_before: dict[StateKey, str]
    # Events of the answer not stored yet, auth events first, as rejected or accepted outliers.
    outliers: list[RemoteEvent]
    # Every event of the answer that passed steps 1–3, and the stored ones they cite.
    known: Mapping[str, Known]

    def check_join(self, event: Event) -> str | None:
        """Step 5 for our join: the reason the state before it does not allow it, or None."""
        keys = auth_types_for_event(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
        auth_state: dict[StateKey, Event] = {}
        for key in [*keys, (CREATE, "")]:
            event_id = self.state_before.get(key)
            if event_id is not None:
                auth_state[key] = self.known[event_id].event
        try:
            check_auth_rules(event, auth_state)
        except AuthError as exc:
            return exc.reason
        return None

    def to_persist(self, join: Event) -> list[RemoteEvent]:
        """The outliers, then our join with the room's state before it."""
        return [*self.outliers, RemoteEvent(join, self.state_before)]


class SendJoinStateChecker:
    def __init__(self, *, events: EventsStore, keyring: EventKeyring) -> None:
        self._events = events
        self._keyring = keyring

    async def check(
        self,
        room_id: str,
        room_version: RoomVersion,
        state: Sequence[Mapping[str, Any]],
        auth_chain: Sequence[Mapping[str, Any]],
    ) -> JoinState:
        """Receipt steps 1–4 for the answer's events; `InvalidJoinState` if the accepted state
        has no create event of `room_version`."""
        checked = await check_received_pdus([*auth_chain, *state], room_version, self._keyring)
        _log_drops(room_id, checked.dropped)
        events = {i: e for i, e in checked.events.items() if e.room_id == room_id}
        known = await self._stored(events, room_id, room_version)
        outliers: list[RemoteEvent] = []
        for event in in_auth_order(e for i, e in events.items() if i not in known):
            if any(a not in known for a in event.auth_event_ids):
                logger.info("send_join event %s lacks auth events; not stored", event.event_id)
                continue
            reason = check_against_listed(event, known)
            known[event.event_id] = Known(event, reason is not None)
            outliers.append(RemoteEvent(event, None, rejected_reason=reason, outlier=True))
        state_before: dict[StateKey, str] = {}
        for event_id in checked.event_ids[len(auth_chain) :]:
            entry = known.get(event_id) if event_id is not None else None
            if entry is not None and not entry.rejected and entry.event.is_state:
                state_before[entry.event.state_tuple] = entry.event.event_id
        create_id = state_before.get((CREATE, ""))
        if create_id is None:
            raise InvalidJoinState("the room state has no valid m.room.create event")
        create = known[create_id].event
        if create.content.get("room_version", "1") != room_version.identifier:
            raise InvalidJoinState("the room's create event names another room version")
        return JoinState(state_before, outliers, known)

    async def _stored(
        self, events: Mapping[str, Event], room_id: str, room_version: RoomVersion
    ) -> dict[str, Known]:
        """Events of the answer already stored, and stored events they cite that the answer
        lacks, with whether they were rejected (their stored verdict stands)."""
        stored = set(await self._events.get_stream_orderings(events))
        cited = {a for e in events.values() for a in e.auth_event_ids} - events.keys()
        if room_version.room_id_from_create_event:
            cited.add("$" + room_id[1:])  # v12: the create event is never listed
        wanted = stored | (cited - events.keys())
        if not wanted:
            return {}
        rows = await self._events.get_event_rows(wanted)
        return {i: Known(r.event, r.rejection_reason is not None) for i, r in rows.items()}


def check_against_listed(event: Event, known: Mapping[str, Known]) -> str | None:
    """Step 4: the reason the event's listed auth events do not allow it, or None."""
    auth = [known[i] for i in event.auth_event_ids if i in known]
    auth_events = [k.event for k in auth]
    rejected = {k.event.event_id for k in auth if k.rejected}
    auth_state = {e.state_tuple: e for e in auth_events if e.is_state}
    if event.room_version.room_id_from_create_event:
        # v12: the create event is never listed, but the rules still read it.
        create = known.get("$" + event.room_id[1:])
        if create is not None and not create.rejected:
            auth_state[(CREATE, "")] = create.event
    try:
        check_listed(event, auth_events, rejected)
        check_auth_rules(event, auth_state)
    except AuthError as exc:
        return exc.reason
    return None


def in_auth_order(events: Iterable[Event]) -> list[Event]:
    """Each event after those of its auth events in the set (by depth, then ID, among the
    ready ones); events on an auth cycle, impossible for valid events, come last by depth."""
    by_id = {e.event_id: e for e in events}
    waiting: dict[str, int] = {}
    dependants: dict[str, list[str]] = {}
    ready: list[tuple[int, str]] = []
    for event_id, event in by_id.items():
        inside = {a for a in event.auth_event_ids if a in by_id}
        waiting[event_id] = len(inside)
        for auth_id in inside:
            dependants.setdefault(auth_id, []).append(event_id)
        if not inside:
            ready.append((event.depth, event_id))
    heapq.heapify(ready)
    ordered: list[Event] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(by_id[event_id])
        for dependant in dependants.get(event_id, ()):
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, (by_id[dependant].depth, dependant))
    if len(ordered) < len(by_id):
        placed = {e.event_id for e in ordered}
        rest = [e for i, e in by_id.items() if i not in placed]
        ordered.extend(sorted(rest, key=lambda e: (e.depth, e.event_id)))
    return ordered


def _log_drops(room_id: str, dropped: Sequence[str]) -> None:
    for reason in dropped[:LOGGED_DROPS]:
        logger.info("send_join answer for %s: dropping an event: %s", room_id, reason)
    if len(dropped) > LOGGED_DROPS:
        logger.info(
            "send_join answer for %s: %d more events dropped", room_id, len(dropped) - LOGGED_DROPS
        )
