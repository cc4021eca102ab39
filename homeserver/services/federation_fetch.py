"""Fetching what a received event needs from the server that sent it.

S2S "Retrieving event authorisation information" (`/event_auth`), "Backfilling and retrieving
missing events" (`/get_missing_events`), "Retrieving events" (`/event`, `/state`). Every answer
is only shape-checked here; each PDU in it still goes through the receipt checks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from homeserver.remote.client import Query, format_path
from homeserver.remote.errors import RemoteError, RemoteUnreachable

logger = logging.getLogger(__name__)

# Bounds on what we take from one answer (the client also bounds the body size).
MAX_FETCHED_PDUS: Final = 5_000
DEFAULT_MISSING_EVENTS_LIMIT: Final = 10


class FetchFailed(Exception):
    """The origin could not be asked, or its answer was unusable."""


class FederationRequester(Protocol):
    """What fetching needs of homeserver/remote/client.py `FederationClient`."""

    async def get_json(self, destination: str, path: str, query: Query | None = None) -> Any: ...

    async def post_json(self, destination: str, path: str, content: Any) -> Any: ...


class RemoteRoomFetcher:
    def __init__(self, requester: FederationRequester) -> None:
        self._requester = requester

    async def get_event_auth(
        self, destination: str, room_id: str, event_id: str
    ) -> list[Mapping[str, Any]]:
        """GET /v1/event_auth/{roomId}/{eventId}: the event's full auth chain."""
        path = format_path("/_matrix/federation/v1/event_auth/{}/{}", room_id, event_id)
        body = await self._get(destination, path)
        return _pdus(body, "auth_chain")

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        *,
        limit: int = DEFAULT_MISSING_EVENTS_LIMIT,
        min_depth: int = 0,
    ) -> list[Mapping[str, Any]]:
        """POST /v1/get_missing_events/{roomId}: events between what we have and `latest`."""
        path = format_path("/_matrix/federation/v1/get_missing_events/{}", room_id)
        content = {
            "earliest_events": list(earliest_events),
            "latest_events": list(latest_events),
            "limit": limit,
            "min_depth": min_depth,
        }
        try:
            body = await self._requester.post_json(destination, path, content)
        except (RemoteError, RemoteUnreachable) as exc:
            raise FetchFailed(str(exc)) from None
        return _pdus(body, "events")

    async def get_state(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """GET /v1/state/{roomId}?event_id=: `(state before the event, its auth chain)`."""
        path = format_path("/_matrix/federation/v1/state/{}", room_id)
        body = await self._get(destination, path, {"event_id": event_id})
        return _pdus(body, "pdus"), _pdus(body, "auth_chain")

    async def get_event(self, destination: str, event_id: str) -> Mapping[str, Any]:
        """GET /v1/event/{eventId}: a transaction holding the one event."""
        path = format_path("/_matrix/federation/v1/event/{}", event_id)
        pdus = _pdus(await self._get(destination, path), "pdus")
        if len(pdus) != 1:
            raise FetchFailed(f"/event answered {len(pdus)} PDUs")
        return pdus[0]

    async def _get(self, destination: str, path: str, query: Query | None = None) -> Any:
        try:
            return await self._requester.get_json(destination, path, query)
        except (RemoteError, RemoteUnreachable) as exc:
            raise FetchFailed(str(exc)) from None


def _pdus(body: Any, key: str) -> list[Mapping[str, Any]]:
    value = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(value, list):
        raise FetchFailed(f"answer has no {key!r} list")
    if len(value) > MAX_FETCHED_PDUS:
        raise FetchFailed(f"answer has {len(value)} PDUs in {key!r}, over {MAX_FETCHED_PDUS}")
    return [pdu for pdu in value if isinstance(pdu, Mapping)]
