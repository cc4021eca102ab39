"""Fetching a room's older history from other servers: S2S "Backfilling and retrieving missing
events" (`GET /v1/backfill/{roomId}?v=…&limit=…`).

When `/messages` walks back to the start of what we hold of a room we joined over federation
(our earliest timeline event cites prev events we do not have), the older events are asked of
the servers in the room, one after another until one answers. Every fetched PDU goes through
the receipt checks that need no "state before" (S2S "Checks performed on receipt of a PDU"
steps 1–4: format, signatures, content hash → redacted, auth against its listed auth events,
whose chain is fetched and stored as outliers when missing); failing ones are dropped.

Accepted events are then saved as backfilled events (`save`): each is checked against the
state before it (step 5: the state after its prev events of the same batch, or stored, or, when
a prev event is unknown, `/state` at the event itself from the server that answered), and the
batch goes oldest first through `EventPipeline.persist_remote_events(..., backfilled=True)`:
negative stream positions, no /sync wake-up, no federation sending, no push, no change of
current state or forward extremities. Soft failure (step 6) is not applied: the events are
older than the current state. /messages calls `backfill` when a backward page runs out
(homeserver/services/pagination.py).

Events we hold only as outliers (the room state received when we joined, auth events fetched
to check others) are not part of the timeline, so they do not stop backfill: a prev event held
as an outlier counts as missing, and when it comes back in a backfill answer it is
"de-outliered" — given the state before it, state groups and a (negative) stream position, and
flagged as a timeline event (homeserver/storage/outliers.py) — so /messages shows it and goes
on past it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Final

from federation.hashing import compute_event_id
from federation.pdu import Event
from federation.room_state import StateKey
from federation.room_versions import RoomVersion
from homeserver.remote.client import format_path
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.services.event_pipeline import EventPipeline, RemoteEvent
from homeserver.services.federation_access import servers_in_state
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_pdu
from homeserver.services.federation_fetch import (
    FederationRequester,
    FetchFailed,
    RemoteRoomFetcher,
)
from homeserver.services.federation_inbound import EventNotProcessed, PduReceiver
from homeserver.services.state import RoomStateCache
from homeserver.storage.events import EventsStore
from homeserver.storage.outliers import OutlierStore, Promotion
from homeserver.storage.state import NewStateGroup, plan_state_group

logger = logging.getLogger(__name__)

MAX_BACKFILL_LIMIT: Final = 100
# Servers asked, in turn, before giving up.
MAX_SERVERS_TRIED: Final = 5
# `/state` requests per saved batch, for events whose prev events we do not hold.
MAX_STATE_FETCHES: Final = 3

StateIds = Mapping[StateKey, str]


class RemoteBackfiller:
    def __init__(
        self,
        *,
        requester: FederationRequester,
        receiver: PduReceiver,
        keyring: EventKeyring,
        cache: RoomStateCache,
        events: EventsStore,
        pipeline: EventPipeline,
        server_name: str,
        outliers: OutlierStore | None = None,
    ) -> None:
        self._requester = requester
        self._fetcher = RemoteRoomFetcher(requester)
        self._receiver = receiver
        self._keyring = keyring
        self._cache = cache
        self._events = events
        self._pipeline = pipeline
        self._server_name = server_name
        # Without it, outliers are held like timeline events (and end backfill).
        self._outliers = outliers
        # One backfill of a room at a time: a second /messages waits and finds it done.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def backfill(self, room_id: str, limit: int) -> int:
        """One backfill round for /messages: older events before the room's earliest timeline
        event, fetched, checked and saved; how many were saved (0: nothing more to have)."""
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        async with lock:
            earliest = await self._events.get_earliest_timeline_event(room_id)
            if earliest is None:
                return 0
            missing = await self.missing_prev_events(earliest)
            if not missing:
                return 0
            origin, events = await self.fetch_from(room_id, missing, limit)
            if origin is None or not events:
                return 0
            return len(await self.save(origin, room_id, events))

    async def has_older_history(self, room_id: str) -> bool:
        """Whether the room's earliest timeline event cites prev events we do not hold."""
        earliest = await self._events.get_earliest_timeline_event(room_id)
        return earliest is not None and bool(await self.missing_prev_events(earliest))

    async def missing_prev_events(self, earliest: Event) -> list[str]:
        """The prev events of our earliest timeline event that we do not hold in the timeline
        (unknown, or only outliers): where backfill starts (empty: nothing to fetch, e.g. the
        room's create event)."""
        prevs = list(earliest.prev_event_ids)
        have = await self._held_in_timeline(prevs)
        return [p for p in prevs if p not in have]

    async def _held_in_timeline(self, event_ids: Sequence[str]) -> set[str]:
        if self._outliers is None:
            return await self._events.have_events(event_ids)
        return await self._outliers.get_timeline_events(event_ids)

    async def backfill_servers(self, room_id: str) -> list[str]:
        """Servers with a joined user in the room now, other than us."""
        state = await self._cache.get_current_state_ids(room_id)
        servers = await servers_in_state(self._cache, state)
        return [s for s in servers if s != self._server_name][:MAX_SERVERS_TRIED]

    async def fetch(self, room_id: str, from_event_ids: Sequence[str], limit: int) -> list[Event]:
        """Events older than (and including) `from_event_ids`, checked, oldest first. The
        first server that answers usefully is used; an empty list if none does."""
        _, events = await self.fetch_from(room_id, from_event_ids, limit)
        return events

    async def fetch_from(
        self, room_id: str, from_event_ids: Sequence[str], limit: int
    ) -> tuple[str | None, list[Event]]:
        """`fetch`, with the server that answered (None when none did)."""
        if not from_event_ids:
            return None, []
        room_version = await self._cache.get_room_version(room_id)
        if room_version is None:
            return None, []
        limit = max(1, min(limit, MAX_BACKFILL_LIMIT))
        path = format_path("/_matrix/federation/v1/backfill/{}", room_id)
        query: dict[str, int | Sequence[str]] = {"v": list(from_event_ids), "limit": limit}
        for server in await self.backfill_servers(room_id):
            try:
                body = await self._requester.get_json(server, path, query)
            except (RemoteError, RemoteUnreachable) as exc:
                logger.info("backfill of %s from %s failed: %s", room_id, server, exc)
                continue
            pdus = _pdus(body)[:limit]
            checked = await self._check(server, room_id, pdus)
            if checked:
                return server, sorted(checked, key=lambda e: (e.depth, e.event_id))
        return None, []

    async def save(self, origin: str, room_id: str, events: Sequence[Event]) -> list[str]:
        """Step 5 for each event (oldest first, as `fetch` returns them), then persist them
        all as backfilled events in one transaction; the IDs saved. Events whose prior state
        cannot be had are left out."""
        items: list[RemoteEvent] = []
        state_after: dict[str, StateIds] = {}
        fetches = 0
        for event in events:
            try:
                state_before, fetched = await self._state_before(
                    origin, event, state_after, may_fetch=fetches < MAX_STATE_FETCHES
                )
            except EventNotProcessed as exc:
                logger.info("backfilled %s not saved: %s", event.event_id, exc)
                continue
            fetches += fetched
            reason = await self._receiver.check_auth_against_state_before(event, state_before)
            if reason is not None:
                logger.info("backfilled %s rejected: %s", event.event_id, reason)
            after = dict(state_before)
            if event.is_state and reason is None:
                after[event.state_tuple] = event.event_id
            state_after[event.event_id] = after
            items.append(RemoteEvent(event, state_before, rejected_reason=reason))
        if not items:
            return []
        held = await self._outlier_ids(items)
        new = [item for item in items if item.event.event_id not in held]
        if new:
            await self._pipeline.persist_remote_events(room_id, new, backfilled=True)
        promoted = await self._promote(room_id, [i for i in items if i.event.event_id in held])
        return [i.event.event_id for i in items if i.event.event_id not in held - promoted]

    async def _outlier_ids(self, items: Sequence[RemoteEvent]) -> set[str]:
        """Which of these events we hold as outliers (to be promoted, not inserted)."""
        if self._outliers is None:
            return set()
        return await self._outliers.get_outliers([item.event.event_id for item in items])

    async def _promote(self, room_id: str, items: Sequence[RemoteEvent]) -> set[str]:
        """De-outlier events we held as outliers, now that the state before each is known:
        state groups (before: the state before it; after: with it, for an accepted state
        event) and a backfill position each. One failing the state before it stays an outlier
        (it may be part of the room's current state)."""
        accepted = [item for item in items if item.rejected_reason is None]
        for item in items:
            if item.rejected_reason is not None:
                logger.info(
                    "outlier %s left as it is: %s", item.event.event_id, item.rejected_reason
                )
        if not accepted or self._outliers is None:
            return set()
        positions = await self._events.allocate_backfill_positions(len(accepted))
        _, group_ids = await self._events.allocate_ids(0, 2 * len(accepted))
        promotions: list[Promotion] = []
        groups: list[NewStateGroup] = []
        for item, position in zip(accepted, positions, strict=True):
            assert item.state_before is not None
            before = plan_state_group(group_ids.pop(0), room_id, item.state_before, None, None)
            groups.append(before)
            after_group = before.state_group
            event = item.event
            if event.is_state:
                after_state = {**item.state_before, event.state_tuple: event.event_id}
                after = plan_state_group(
                    group_ids.pop(0), room_id, after_state, before.info, item.state_before
                )
                groups.append(after)
                after_group = after.state_group
            promotions.append(Promotion(event, position, before.state_group, after_group))
        promoted = await self._outliers.promote_outliers(promotions, groups)
        for promotion in promotions:
            if promotion.event.event_id in promoted:
                self._cache.cache_event_groups(
                    promotion.event.event_id,
                    promotion.state_group_after,
                    promotion.state_group_before,
                )
        return set(promoted)

    async def _state_before(
        self, origin: str, event: Event, batch: Mapping[str, StateIds], *, may_fetch: bool
    ) -> tuple[StateIds, int]:
        """The state before `event` and how many `/state` requests it took: the resolution of
        the states after its prev events (of this batch, or stored timeline events), or, when
        one is unknown (outlier or missing), `/state` at the event itself."""
        states: list[StateIds] = []
        unknown = [p for p in event.prev_event_ids if p not in batch]
        groups = await self._cache.get_state_groups_for_events(unknown)
        if any(p not in groups for p in unknown):
            if not may_fetch:
                raise EventNotProcessed("too many events of the batch lack their prior state")
            return await self._fetch_state_before(origin, event), 1
        for prev_id in event.prev_event_ids:
            if prev_id in batch:
                states.append(batch[prev_id])
            else:
                states.append(await self._cache.get_state_group_state(groups[prev_id][0]))
        return await self._receiver.resolve_states(event.room_version, states), 0

    async def _fetch_state_before(self, origin: str, event: Event) -> StateIds:
        """S2S `GET /v1/state/{roomId}?event_id=`: the state before the event, its events
        checked (steps 1–4) and stored as outliers; rejected ones are not part of it."""
        try:
            state_pdus, auth_pdus = await self._fetcher.get_state(
                origin, event.room_id, event.event_id
            )
        except FetchFailed as exc:
            raise EventNotProcessed(f"state before it unavailable: {exc}") from None
        stored = await self._receiver.persist_outliers(
            [*auth_pdus, *state_pdus], event.room_version, event.room_id
        )
        state_ids = {_event_id(pdu, event.room_version) for pdu in state_pdus}
        rows = await self._events.get_event_rows(i for i in state_ids if i in stored)
        return {
            row.event.state_tuple: event_id
            for event_id, row in rows.items()
            if row.event.is_state and row.rejection_reason is None
        }

    async def _check(
        self, origin: str, room_id: str, pdus: Sequence[Mapping[str, Any]]
    ) -> list[Event]:
        """Steps 1–4 for each PDU of the room not already held; failing ones are dropped."""
        room_version = await self._cache.get_room_version(room_id)
        assert room_version is not None
        accepted: list[Event] = []
        for pdu in sorted(pdus, key=_depth_of):
            try:
                event = await check_pdu(pdu, room_version, self._keyring)  # steps 1–3
            except DroppedPdu as exc:
                logger.info("dropping a backfilled PDU from %s: %s", origin, exc)
                continue
            if event.room_id != room_id or await self._held_in_timeline([event.event_id]):
                continue
            try:
                reason = await self._receiver.check_auth_against_auth_events(origin, event)
            except EventNotProcessed as exc:
                logger.info("backfilled %s not processed: %s", event.event_id, exc)
                continue
            if reason is not None:
                logger.info("backfilled %s rejected: %s", event.event_id, reason)
                continue
            accepted.append(event)
        return accepted


def _pdus(body: Any) -> list[Mapping[str, Any]]:
    value = body.get("pdus") if isinstance(body, Mapping) else None
    if not isinstance(value, list):
        return []
    return [pdu for pdu in value if isinstance(pdu, Mapping)]


def _event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    try:
        return compute_event_id(pdu, room_version)
    except Exception:  # a malformed PDU: persist_outliers dropped it too
        return ""


def _depth_of(pdu: Mapping[str, Any]) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) else 0
