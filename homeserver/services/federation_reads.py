"""What other servers may read of a room: events, state at an event, auth chains, history.

S2S "Retrieving events" (`/event`, `/state`, `/state_ids`), "Retrieving event authorisation
information" (`/event_auth`), "Backfilling and retrieving missing events" (`/backfill`,
`/get_missing_events`). Each refuses servers with no user in the room (403 M_FORBIDDEN, see
homeserver/services/federation_access.py) and servers the room's ACL denies; events the
asking server may not see are served redacted. Rejected events are never served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final

from federation.redaction import redact
from homeserver.errors import MatrixError
from homeserver.services.federation_access import (
    ensure_acl_allows,
    ensure_server_in_room,
    forbidden,
    server_may_see,
)
from homeserver.services.state import RoomStateCache
from homeserver.storage.event_rows import EventRow
from homeserver.storage.events import EventsStore

MAX_BACKFILL_LIMIT: Final = 100
MAX_MISSING_EVENTS_LIMIT: Final = 100


def _now_ms() -> int:
    return int(time.time() * 1000)


def federation_pdu(row: EventRow) -> dict[str, Any]:
    """The PDU as served to other servers: redacted if a redaction applies, without our
    `unsigned` annotations."""
    pdu = dict(row.event.pdu)
    if row.redacted_because is not None:
        pdu = redact(pdu, row.event.room_version)
    pdu.pop("unsigned", None)
    return pdu


def not_found(what: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", what)


class FederationReads:
    def __init__(
        self,
        cache: RoomStateCache,
        events: EventsStore,
        server_name: str,
        *,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._cache = cache
        self._events = events
        self._server_name = server_name
        self._clock = clock

    def _transaction(self, pdus: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {
            "origin": self._server_name,
            "origin_server_ts": self._clock(),
            "pdus": [dict(pdu) for pdu in pdus],
        }

    async def _event_in_room(self, room_id: str | None, event_id: str) -> EventRow:
        row = (await self._events.get_event_rows([event_id])).get(event_id)
        if row is None or row.rejection_reason is not None:
            raise not_found(f"Event {event_id} not found")
        if room_id is not None and row.event.room_id != room_id:
            raise not_found(f"Event {event_id} is not in {room_id}")
        return row

    async def _served(self, origin: str, rows: Iterable[EventRow]) -> list[dict[str, Any]]:
        """PDUs for `origin`, redacted where history visibility hides them."""
        served = []
        for row in rows:
            pdu = federation_pdu(row)
            if not await server_may_see(self._cache, row, origin):
                pdu = redact(pdu, row.event.room_version)
            served.append(pdu)
        return served

    async def get_event(self, origin: str, event_id: str) -> dict[str, Any]:
        """GET /v1/event/{eventId}: a transaction holding the event."""
        row = await self._event_in_room(None, event_id)
        room_id = row.event.room_id
        await ensure_acl_allows(self._cache, room_id, origin)
        await ensure_server_in_room(self._cache, room_id, origin, at_events=[event_id])
        if not await server_may_see(self._cache, row, origin):
            raise forbidden("Not allowed to see this event")
        return self._transaction([federation_pdu(row)])

    async def _state_at(self, origin: str, room_id: str, event_id: str) -> Mapping[Any, str]:
        await ensure_acl_allows(self._cache, room_id, origin)
        await self._event_in_room(room_id, event_id)
        await ensure_server_in_room(self._cache, room_id, origin, at_events=[event_id])
        state = await self._cache.get_state_before_event(event_id)
        if state is None:
            raise not_found(f"No state known at {event_id}")
        return state

    async def get_state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /v1/state_ids/{roomId}?event_id=: the state before the event and its auth
        chain, as IDs."""
        state = await self._state_at(origin, room_id, event_id)
        chain = await self._events.get_auth_chain_ids(set(state.values()))
        return {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(chain)}

    async def get_state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /v1/state/{roomId}?event_id=: the same as full PDUs."""
        state = await self._state_at(origin, room_id, event_id)
        chain = await self._events.get_auth_chain_ids(set(state.values()))
        return {
            "pdus": await self._pdus(state.values()),
            "auth_chain": await self._pdus(chain),
        }

    async def get_event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /v1/event_auth/{roomId}/{eventId}: the event's full auth chain."""
        await ensure_acl_allows(self._cache, room_id, origin)
        await self._event_in_room(room_id, event_id)
        await ensure_server_in_room(self._cache, room_id, origin, at_events=[event_id])
        chain = await self._events.get_auth_chain_ids([event_id])
        return {"auth_chain": await self._pdus(chain)}

    async def _pdus(self, event_ids: Collection[str]) -> list[dict[str, Any]]:
        rows = await self._events.get_event_rows(event_ids)
        ordered = sorted(rows.values(), key=lambda r: (r.event.depth, r.stream_ordering))
        return [federation_pdu(r) for r in ordered if r.rejection_reason is None]

    async def backfill(
        self, origin: str, room_id: str, event_ids: Sequence[str], limit: int
    ) -> dict[str, Any]:
        """GET /v1/backfill/{roomId}?v=…&limit=: the given events and those before them,
        newest first, at most `limit`."""
        await ensure_acl_allows(self._cache, room_id, origin)
        await ensure_server_in_room(self._cache, room_id, origin, at_events=event_ids)
        limit = max(0, min(limit, MAX_BACKFILL_LIMIT))
        rows = await self._walk_back(room_id, event_ids, limit, skip=set(), min_depth=0)
        rows.sort(key=lambda r: (r.event.depth, r.stream_ordering), reverse=True)
        return self._transaction(await self._served(origin, rows[:limit]))

    async def get_missing_events(
        self,
        origin: str,
        room_id: str,
        earliest_events: Collection[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> dict[str, Any]:
        """POST /v1/get_missing_events/{roomId}: the ancestors of `latest_events` not reachable
        past `earliest_events`, no shallower than `min_depth`, oldest first."""
        await ensure_acl_allows(self._cache, room_id, origin)
        await ensure_server_in_room(self._cache, room_id, origin, at_events=latest_events)
        limit = max(0, min(limit, MAX_MISSING_EVENTS_LIMIT))
        latest = await self._events.get_event_rows(latest_events)
        starts = [
            prev
            for row in latest.values()
            if row.event.room_id == room_id
            for prev in row.event.prev_event_ids
        ]
        skip = set(earliest_events) | set(latest_events)
        rows = await self._walk_back(room_id, starts, limit, skip=skip, min_depth=min_depth)
        rows.sort(key=lambda r: (r.event.depth, r.stream_ordering))
        return {"events": await self._served(origin, rows[-limit:] if limit else [])}

    async def _walk_back(
        self,
        room_id: str,
        start: Iterable[str],
        limit: int,
        *,
        skip: set[str],
        min_depth: int,
    ) -> list[EventRow]:
        """Breadth-first through prev_events from `start` (included), until `limit` events;
        stops at `skip`, other rooms' events and events shallower than `min_depth`. Rejected
        events are walked through but not returned."""
        found: list[EventRow] = []
        seen = set(skip)
        frontier = [e for e in dict.fromkeys(start) if e not in seen]
        while frontier and len(found) < limit:
            seen.update(frontier)
            rows = await self._events.get_event_rows(frontier)
            next_ids: list[str] = []
            for event_id in frontier:
                row = rows.get(event_id)
                if row is None or row.event.room_id != room_id or row.event.depth < min_depth:
                    continue
                if row.rejection_reason is None:
                    found.append(row)
                next_ids.extend(p for p in row.event.prev_event_ids if p not in seen)
            frontier = list(dict.fromkeys(next_ids))
        return found
