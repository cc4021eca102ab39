"""Receiving PDUs from other servers: the receipt checks as named steps, then the one pipeline.

S2S "Checks performed on receipt of a PDU":
1. `check_format`, 2. `check_signatures`, 3. `check_content_hash` (homeserver/services/
   federation_checks.py): dropped on 1–2, redacted on 3;
4. `check_auth_against_auth_events`: the listed auth events (fetched from the origin with
   `/event_auth` when missing) must allow it, else it is rejected;
5. `check_auth_against_state_before`: the state at its prev events (missing prev events
   fetched with `/get_missing_events`, or else the state at them with `/state`; several prev
   states resolved; homeserver/services/federation_state_before.py) must allow it, else it
   is rejected;
6. `soft_fail_against_current_state`: the current state must allow it, else it is soft failed.
Rejected and soft-failed events are stored too ("Rejection", "Soft failure"), through
`EventPipeline.persist_remote_event(s)`. An event whose auth events or prior state cannot be
had is not stored at all, and the sender is told why; it may send it again.

An event we hold only as an outlier that arrives again (through `/send` or
`/get_missing_events`) goes through steps 4–6 too and, unless rejected, becomes part of the
timeline (homeserver/services/federation_promote.py).

Events of one room are received one at a time (a lock per room), so each sees the state its
predecessor left. The PDUs of one room in one transaction are decided one by one against an
open batch and committed together (homeserver/services/federation_inbound_batch.py).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from federation.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from federation.pdu import Event
from federation.room_state import CREATE
from federation.room_versions import RoomVersion
from homeserver.services.event_pipeline import EventPipeline, RemoteEvent
from homeserver.services.federation_access import server_acl_allows
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_pdu
from homeserver.services.federation_fetch import FetchFailed, RemoteRoomFetcher
from homeserver.services.federation_promote import OutlierPromoter
from homeserver.services.federation_state_before import StateBeforeEvent
from homeserver.services.federation_verdicts import (
    EventNotProcessed,
    Known,
    PduResult,
    StateIds,
    Verdict,
    auth_against_listed,
    create_event_id,
    event_id_or_none,
)
from homeserver.services.remote_batch import RemoteBatch
from homeserver.services.state import DEFAULT_EVENT_CACHE_SIZE, LruCache, RoomStateCache
from homeserver.storage.events import EventsStore

logger = logging.getLogger(__name__)

__all__ = ["EventNotProcessed", "PduReceiver", "PduResult", "Verdict"]

# Whether stored events were rejected (it never changes), remembered for as many events as the
# event cache holds: it serves auth events from there.
REJECTION_CACHE_SIZE: Final = DEFAULT_EVENT_CACHE_SIZE


class PduReceiver:
    def __init__(
        self,
        *,
        cache: RoomStateCache,
        events: EventsStore,
        pipeline: EventPipeline,
        keyring: EventKeyring,
        fetcher: RemoteRoomFetcher | None,
    ) -> None:
        self._cache = cache
        self._events = events
        self._pipeline = pipeline
        self._keyring = keyring
        self._fetcher = fetcher
        self._state_before = StateBeforeEvent(
            receiver=self, cache=cache, events=events, fetcher=fetcher
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # event ID → rejected, for stored events: auth events are then read from the event
        # cache instead of the database.
        self._rejected: LruCache[str, bool] = LruCache(REJECTION_CACHE_SIZE)
        # Without it, an outlier received again is left as it is.
        self._promoter: OutlierPromoter | None = None

    def set_promoter(self, promoter: OutlierPromoter) -> None:
        self._promoter = promoter

    async def held_as_outliers(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these stored events are outliers that may become timeline events."""
        if self._promoter is None:
            return set()
        return await self._promoter.held_as_outliers(list(event_ids))

    @property
    def cache(self) -> RoomStateCache:
        return self._cache

    @property
    def pipeline(self) -> EventPipeline:
        return self._pipeline

    @property
    def events(self) -> EventsStore:
        return self._events

    @property
    def keyring(self) -> EventKeyring:
        return self._keyring

    def _room_lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    async def receive_pdu(self, origin: str, pdu: Mapping[str, Any]) -> PduResult:
        """Run one PDU from a transaction of `origin` through the checks and store it."""
        room_id = pdu.get("room_id")
        if not isinstance(room_id, str):
            return PduResult(None, "PDU has no room_id")
        room_version = await self._cache.get_room_version(room_id)
        if room_version is None:
            return PduResult(None, f"unknown room {room_id}")
        event_id = event_id_or_none(pdu, room_version)
        if event_id is None:
            return PduResult(None, "cannot compute the event ID")
        # S2S "Server ACLs": a PDU of a denied server is ignored, with an error for it.
        if not await server_acl_allows(self._cache, room_id, origin):
            return PduResult(event_id, "server is denied by the room's server ACL")
        async with self._room_lock(room_id):
            try:
                return await self.receive_unchecked(origin, pdu, room_version, fetch_missing=True)
            except (DroppedPdu, EventNotProcessed) as exc:
                logger.info("PDU %s from %s not accepted: %s", event_id, origin, exc)
                return PduResult(event_id, str(exc))

    def room_lock(self, room_id: str) -> asyncio.Lock:
        """Held while an event of the room is checked and stored (one at a time per room)."""
        return self._room_lock(room_id)

    async def receive_unchecked(
        self,
        origin: str,
        pdu: Mapping[str, Any],
        room_version: RoomVersion,
        *,
        fetch_missing: bool,
    ) -> PduResult:
        """Steps 1–6 and storing for one PDU; the caller holds `room_lock`."""
        event = await check_pdu(pdu, room_version, self._keyring)  # steps 1–3
        return await self.receive_checked(origin, event, fetch_missing=fetch_missing)

    async def receive_checked(self, origin: str, event: Event, *, fetch_missing: bool) -> PduResult:
        """Steps 4–6 and storing, for an event that passed steps 1–3, on its own (what it
        lacks is fetched when `fetch_missing`); the caller holds `room_lock`."""
        if await self._events.have_events([event.event_id]):
            if await self.held_as_outliers([event.event_id]):
                await self._promote(origin, event)
            return PduResult(event.event_id)  # seen before: nothing more to do
        if event.type == CREATE:
            raise DroppedPdu("a room's m.room.create event cannot be sent into it")
        verdict = await self.decide(origin, event, fetch_missing=fetch_missing)
        await self._pipeline.persist_remote_event(
            event,
            verdict.state_before,
            rejected_reason=verdict.rejected_reason,
            soft_failed=verdict.soft_failed,
        )
        self.remember_stored({event.event_id: verdict.rejected_reason is not None})
        error = verdict.rejected_reason
        return PduResult(event.event_id, None if error is None else f"rejected: {error}")

    async def _promote(self, origin: str, event: Event) -> None:
        """An outlier received again: steps 4–6 give the state before it, and it joins the
        timeline unless rejected. It is held either way, so failing here is no error for the
        sender."""
        assert self._promoter is not None
        # Only with its prev events in the timeline: then the state before it is known here.
        # One whose prev events we lack (room state from before our join) stays an outlier.
        groups = await self._cache.get_state_groups_for_events(event.prev_event_ids)
        if any(p not in groups for p in event.prev_event_ids):
            logger.info("outlier %s stays an outlier: prev events unknown", event.event_id)
            return
        try:
            verdict = await self.decide(origin, event, fetch_missing=False)
        except EventNotProcessed as exc:
            logger.info("outlier %s stays an outlier: %s", event.event_id, exc)
            return
        await self._promoter.promote(event, verdict, self.resolve_states)

    async def decide(self, origin: str, event: Event, *, fetch_missing: bool) -> Verdict:
        """Steps 4–6 for an event that passed steps 1–3; the caller holds `room_lock`.
        `EventNotProcessed` if its auth events or the state before it cannot be had."""
        rejected = await self.check_auth_against_auth_events(origin, event)
        state_before = await self.state_before_event(origin, event, fetch_missing=fetch_missing)
        if rejected is None:
            rejected = await self.check_auth_against_state_before(event, state_before)
        soft_failed = rejected is None and await self.soft_fail_against_current_state(event)
        return Verdict(state_before, rejected, soft_failed)

    # --- step 4 ---------------------------------------------------------------------------

    async def check_auth_against_auth_events(self, origin: str, event: Event) -> str | None:
        """Step 4; returns the rejection reason. Missing auth events are fetched from `origin`;
        `EventNotProcessed` if they still cannot be had."""
        known = await self.known_events(event.auth_event_ids)
        if any(i not in known for i in event.auth_event_ids):
            await self._fetch_auth_chain(origin, event)
            known = await self.known_events(event.auth_event_ids)
            missing = [i for i in event.auth_event_ids if i not in known]
            if missing:
                raise EventNotProcessed(f"auth events not available: {', '.join(missing)}")
        return await self._auth_against_listed(event, known)

    async def _auth_against_listed(self, event: Event, known: Mapping[str, Known]) -> str | None:
        if event.room_version.room_id_from_create_event:
            create_id = create_event_id(event)
            if create_id not in known:
                known = {**known, **(await self.known_events([create_id]))}
        return auth_against_listed(event, known)

    async def known_events(
        self, event_ids: Iterable[str], batch: RemoteBatch | None = None
    ) -> dict[str, Known]:
        """Events of `batch` or stored ones, with whether they were rejected; unknown IDs are
        absent. Stored events whose rejection is remembered come from the event cache."""
        ids = list(dict.fromkeys(event_ids))
        rejected: dict[str, bool] = {}
        unknown: list[str] = []
        for event_id in ids:
            flag = batch.is_rejected(event_id) if batch is not None else None
            if flag is None:
                flag = self._rejected.get(event_id)
            if flag is None:
                unknown.append(event_id)
            else:
                rejected[event_id] = flag
        found: dict[str, Known] = {}
        if rejected:
            getter = batch.get_events if batch is not None else self._cache.get_events
            events = await getter(rejected)
            found.update((i, Known(e, rejected[i])) for i, e in events.items())
        if unknown:
            rows = await self._events.get_event_rows(unknown)
            for event_id, row in rows.items():
                is_rejected = row.rejection_reason is not None
                self._rejected.put(event_id, is_rejected)
                found[event_id] = Known(row.event, is_rejected)
        return found

    async def learn_rejections(self, event_ids: Iterable[str]) -> None:
        """Read in one query whether these stored events were rejected, for those not yet
        remembered (the auth events of a transaction's PDUs: then served from the cache)."""
        unknown = [i for i in dict.fromkeys(event_ids) if self._rejected.get(i) is None]
        self.remember_stored(await self._events.get_rejection_flags(unknown))

    def remember_stored(self, rejected: Mapping[str, bool]) -> None:
        """Events just stored, and whether they were rejected."""
        for event_id, flag in rejected.items():
            self._rejected.put(event_id, flag)

    async def _fetch_auth_chain(self, origin: str, event: Event) -> None:
        if self._fetcher is None:
            return
        try:
            pdus = await self._fetcher.get_event_auth(origin, event.room_id, event.event_id)
        except FetchFailed as exc:
            logger.info("fetching the auth chain of %s failed: %s", event.event_id, exc)
            return
        await self.persist_outliers(pdus, event.room_version, event.room_id)

    async def persist_outliers(
        self, pdus: Iterable[Mapping[str, Any]], room_version: RoomVersion, room_id: str
    ) -> dict[str, Event]:
        """Check fetched events (steps 1–4) and store them as outliers, auth events first.

        Events of other rooms, and those failing steps 1–2, are left out; those failing step 4
        are stored as rejected. Returns the events now stored, by ID.
        """
        checked: dict[str, Event] = {}
        for pdu in pdus:
            try:
                event = await check_pdu(pdu, room_version, self._keyring)
            except DroppedPdu as exc:
                logger.info("dropping a fetched event: %s", exc)
                continue
            if event.room_id == room_id:
                checked[event.event_id] = event
        stored = await self.known_events(checked)
        known: dict[str, Known] = dict(stored)
        referenced = {a for e in checked.values() for a in e.auth_event_ids} - set(checked)
        known.update(await self.known_events(referenced))
        if room_version.room_id_from_create_event:
            known.update(await self.known_events(["$" + room_id[1:]]))
        items: list[RemoteEvent] = []
        for event in _in_auth_order(e for i, e in checked.items() if i not in stored):
            if any(a not in known for a in event.auth_event_ids):
                logger.info("fetched event %s lacks auth events; not stored", event.event_id)
                continue
            reason = await self._auth_against_listed(event, known)
            known[event.event_id] = Known(event, reason is not None)
            items.append(RemoteEvent(event, None, rejected_reason=reason, outlier=True))
        if items:
            await self._pipeline.persist_remote_events(room_id, items)
            self.remember_stored({i.event.event_id: i.rejected_reason is not None for i in items})
        return {i: e for i, e in checked.items() if i in known}

    # --- step 5 ---------------------------------------------------------------------------

    async def state_before_event(
        self, origin: str, event: Event, *, fetch_missing: bool
    ) -> StateIds:
        """The state at the event: after its prev event, or the resolution of the states after
        its prev events (homeserver/services/federation_state_before.py). `EventNotProcessed`
        if the state at some prev event cannot be had."""
        return await self._state_before.state_before_event(
            origin, event, fetch_missing=fetch_missing
        )

    async def resolve_states(
        self, room_version: RoomVersion, states: Sequence[StateIds]
    ) -> StateIds:
        """The resolution of several states (S2S "Room State"); one state as it is.
        `EventNotProcessed` if state resolution fails."""
        return await self._state_before.resolve(room_version, states)

    async def check_auth_against_state_before(
        self, event: Event, state_before: StateIds
    ) -> str | None:
        """Step 5; returns the rejection reason."""
        return await self.auth_against_state(event, state_before)

    # --- step 6 ---------------------------------------------------------------------------

    async def soft_fail_against_current_state(self, event: Event) -> bool:
        """Step 6: whether the event fails the auth rules against the room's current state."""
        current = await self._cache.get_current_state_ids(event.room_id)
        return await self.auth_against_state(event, current) is not None

    async def auth_against_state(
        self, event: Event, state: StateIds, batch: RemoteBatch | None = None
    ) -> str | None:
        """The auth rules against a state (S2S steps 5 and 6); returns the rejection reason.
        With `batch`, the state may name events of the batch."""
        keys = auth_types_for_event(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
        wanted = [state[k] for k in [*keys, (CREATE, "")] if k in state]
        getter = batch.get_events if batch is not None else self._cache.get_events
        found = await getter(wanted)
        auth_state = {e.state_tuple: e for e in found.values()}
        try:
            check_auth_rules(event, auth_state)
        except AuthError as exc:
            return exc.reason
        return None


def _in_auth_order(events: Iterable[Event]) -> list[Event]:
    """Events ordered so that each comes after those of its auth events in the set."""
    pending = {e.event_id: e for e in events}
    ordered: list[Event] = []
    while pending:
        ready = [e for e in pending.values() if all(a not in pending for a in e.auth_event_ids)]
        if not ready:  # a cycle: impossible for valid events; take the rest by depth
            ready = list(pending.values())
        for event in sorted(ready, key=lambda e: (e.depth, e.event_id)):
            ordered.append(event)
            del pending[event.event_id]
    return ordered
