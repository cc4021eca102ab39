"""The state before a received PDU (S2S "Checks performed on receipt of a PDU", step 5):
the state after its prev events, resolved when there are several (S2S "Room State").

Missing prev events are fetched with `/get_missing_events` and received oldest first; those
still missing are filled with `/state` at them (the state and its auth chain stored as
outliers).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from federation.pdu import Event
from federation.room_versions import RoomVersion
from federation.state_res import resolve_state
from federation.state_res_ordering import StateResolutionError
from homeserver.services.federation_checks import DroppedPdu
from homeserver.services.federation_fetch import FetchFailed, RemoteRoomFetcher
from homeserver.services.federation_verdicts import EventNotProcessed, StateIds, event_id_or_none
from homeserver.services.state import RoomStateCache
from homeserver.storage.events import EventsStore

if TYPE_CHECKING:
    from homeserver.services.federation_inbound import PduReceiver

logger = logging.getLogger(__name__)

# S2S "/get_missing_events": how many events we ask for to fill a gap before falling back
# to asking for the state at the missing prev events.
MISSING_EVENTS_LIMIT: Final = 10
# At most this many prev events of one event are filled with a /state request each.
MAX_STATE_FETCHES: Final = 3


class StateBeforeEvent:
    def __init__(
        self,
        *,
        receiver: PduReceiver,
        cache: RoomStateCache,
        events: EventsStore,
        fetcher: RemoteRoomFetcher | None,
    ) -> None:
        self._receiver = receiver
        self._cache = cache
        self._events = events
        self._fetcher = fetcher

    async def state_before_event(
        self, origin: str, event: Event, *, fetch_missing: bool
    ) -> StateIds:
        """The state at the event: after its prev event, or the resolution of the states after
        its prev events. `EventNotProcessed` if the state at some prev event cannot be had."""
        prev_ids = list(event.prev_event_ids)
        groups = await self._cache.get_state_groups_for_events(prev_ids)
        if fetch_missing and self._fetcher is not None and any(p not in groups for p in prev_ids):
            await self._fetch_missing_events(origin, event)
            groups = await self._cache.get_state_groups_for_events(prev_ids)
        missing = [p for p in prev_ids if p not in groups]
        if len(missing) > MAX_STATE_FETCHES:
            raise EventNotProcessed(f"{len(missing)} prev events missing")
        states = [await self._cache.get_state_group_state(groups[p][0]) for p in groups]
        for prev_id in missing:
            states.append(await self._fetch_state_after(origin, event, prev_id))
        return await self.resolve(event.room_version, states)

    async def _fetch_missing_events(self, origin: str, event: Event) -> None:
        """S2S "/get_missing_events": the events between our extremities and this one, each
        received oldest first (without fetching further gaps: those fall back to /state)."""
        assert self._fetcher is not None
        room = await self._cache.get_room_state(event.room_id)
        earliest = sorted(room.forward_extremities) if room is not None else []
        try:
            pdus = await self._fetcher.get_missing_events(
                origin, event.room_id, earliest, [event.event_id], limit=MISSING_EVENTS_LIMIT
            )
        except FetchFailed as exc:
            logger.info("get_missing_events for %s failed: %s", event.event_id, exc)
            return
        for pdu in sorted(pdus[:MISSING_EVENTS_LIMIT], key=_depth_of):
            try:
                await self._receiver.receive_unchecked(
                    origin, pdu, event.room_version, fetch_missing=False
                )
            except (DroppedPdu, EventNotProcessed) as exc:
                logger.info("a missing event of %s was not accepted: %s", event.event_id, exc)

    async def _fetch_state_after(self, origin: str, event: Event, prev_id: str) -> StateIds:
        """The state after a prev event we do not have: `/state` at it (the state before it)
        plus the event itself when it is a state event; all stored as outliers."""
        if self._fetcher is None:
            raise EventNotProcessed(f"prev event {prev_id} is unknown")
        try:
            state_pdus, auth_pdus = await self._fetcher.get_state(origin, event.room_id, prev_id)
            prev_pdu = await self._fetcher.get_event(origin, prev_id)
        except FetchFailed as exc:
            raise EventNotProcessed(f"state at prev event {prev_id} unavailable: {exc}") from None
        receiver = self._receiver
        stored = await receiver.persist_outliers(
            [*auth_pdus, *state_pdus, prev_pdu], event.room_version, event.room_id
        )
        if prev_id not in stored:
            raise EventNotProcessed(f"prev event {prev_id} could not be checked")
        state_ids = {event_id_or_none(pdu, event.room_version) for pdu in state_pdus}
        known = await receiver.known_events([i for i in state_ids if i in stored and i != prev_id])
        state = {k.event.state_tuple: i for i, k in known.items() if k.event.is_state}
        state = {key: i for key, i in state.items() if not known[i].rejected}
        prev = (await receiver.known_events([prev_id])).get(prev_id)
        if prev is not None and prev.event.is_state and not prev.rejected:
            state[prev.event.state_tuple] = prev_id
        return state

    async def resolve(self, room_version: RoomVersion, states: Sequence[StateIds]) -> StateIds:
        """The resolution of several states (S2S "Room State"); one state as it is.
        `EventNotProcessed` if state resolution fails."""
        distinct: list[StateIds] = []
        for state in states:
            if all(state != seen for seen in distinct):
                distinct.append(state)
        if len(distinct) <= 1:
            return distinct[0] if distinct else {}
        chains = [await self._events.get_auth_chain_ids(set(s.values())) for s in distinct]
        wanted = set().union(*chains, *(s.values() for s in distinct))
        rows = await self._events.get_event_rows(wanted)
        rejected = {i for i, r in rows.items() if r.rejection_reason is not None}
        event_map = {i: r.event for i, r in rows.items()}
        try:
            return resolve_state(
                room_version, distinct, chains, event_map, rejected_event_ids=rejected
            )
        except StateResolutionError as exc:
            raise EventNotProcessed(f"state resolution failed: {exc}") from None


def _depth_of(pdu: Mapping[str, Any]) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) else 0
