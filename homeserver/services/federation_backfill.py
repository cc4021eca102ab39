"""Fetching a room's older history from other servers: S2S "Backfilling and retrieving missing
events" (`GET /v1/backfill/{roomId}?v=…&limit=…`).

When `/messages` walks back to the start of what we hold of a room we joined over federation
(our earliest timeline event cites prev events we do not have), the older events are asked of
the servers in the room, one after another until one answers. Every fetched PDU goes through
the receipt checks that need no "state before" (S2S "Checks performed on receipt of a PDU"
steps 1–4: format, signatures, content hash → redacted, auth against its listed auth events,
whose chain is fetched and stored as outliers when missing); failing ones are dropped.

NOT YET DONE: persisting the checked events as timeline ("backfilled") events and the hook in
homeserver/services/pagination.py. The one pipeline (homeserver/services/event_pipeline.py)
gives every accepted event the next positive stream position and wakes /sync, so a backfilled
event would reach clients as if new. The schema orders timelines by `(depth,
stream_ordering)` (homeserver/storage/room_reads.py), so backfilled events sort correctly by
their smaller depth whatever their stream position; what they need is a position no /sync
token covers: a decreasing negative `stream_ordering` (Synapse's choice), allocated from its
own sequence, with `persist_remote_events(..., backfilled=True)` skipping notification,
current-state and forward-extremity changes (`has_stored_child` already covers the latter).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from federation.pdu import Event
from homeserver.remote.client import format_path
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.services.federation_access import servers_in_state
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_pdu
from homeserver.services.federation_fetch import FederationRequester
from homeserver.services.federation_inbound import EventNotProcessed, PduReceiver
from homeserver.services.state import RoomStateCache
from homeserver.storage.events import EventsStore

logger = logging.getLogger(__name__)

MAX_BACKFILL_LIMIT: Final = 100
# Servers asked, in turn, before giving up.
MAX_SERVERS_TRIED: Final = 5


class RemoteBackfiller:
    def __init__(
        self,
        *,
        requester: FederationRequester,
        receiver: PduReceiver,
        keyring: EventKeyring,
        cache: RoomStateCache,
        events: EventsStore,
        server_name: str,
    ) -> None:
        self._requester = requester
        self._receiver = receiver
        self._keyring = keyring
        self._cache = cache
        self._events = events
        self._server_name = server_name

    async def missing_prev_events(self, earliest: Event) -> list[str]:
        """The prev events of our earliest timeline event that we do not hold: where backfill
        starts (empty: nothing to fetch, e.g. the room's create event)."""
        prevs = list(earliest.prev_event_ids)
        have = await self._events.have_events(prevs)
        return [p for p in prevs if p not in have]

    async def backfill_servers(self, room_id: str) -> list[str]:
        """Servers with a joined user in the room now, other than us."""
        state = await self._cache.get_current_state_ids(room_id)
        servers = await servers_in_state(self._cache, state)
        return [s for s in servers if s != self._server_name][:MAX_SERVERS_TRIED]

    async def fetch(self, room_id: str, from_event_ids: Sequence[str], limit: int) -> list[Event]:
        """Events older than (and including) `from_event_ids`, checked, oldest first. The
        first server that answers usefully is used; an empty list if none does."""
        if not from_event_ids:
            return []
        room_version = await self._cache.get_room_version(room_id)
        if room_version is None:
            return []
        limit = max(1, min(limit, MAX_BACKFILL_LIMIT))
        path = format_path("/_matrix/federation/v1/backfill/{}", room_id)
        query = {"v": list(from_event_ids), "limit": limit}
        for server in await self.backfill_servers(room_id):
            try:
                body = await self._requester.get_json(server, path, query)
            except (RemoteError, RemoteUnreachable) as exc:
                logger.info("backfill of %s from %s failed: %s", room_id, server, exc)
                continue
            pdus = _pdus(body)[:limit]
            checked = await self._check(server, room_id, pdus)
            if checked:
                return sorted(checked, key=lambda e: (e.depth, e.event_id))
        return []

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
            if event.room_id != room_id or await self._events.have_events([event.event_id]):
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


def _depth_of(pdu: Mapping[str, Any]) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) else 0
