"""Fetching what a received event needs from the server that sent it.

S2S "Retrieving event authorisation information" (`/event_auth`), "Backfilling and retrieving
missing events" (`/get_missing_events`), "Retrieving events" (`/event`, `/state`). Every answer
is only shape-checked here; each PDU in it still goes through the receipt checks.

Every request is bounded (`REQUEST_TIMEOUT_S`), and inside `fetch_budget(...)` (one inbound
transaction) all requests together are too, so an origin that stops answering cannot hold a
`PUT /send` open for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

from homeserver.remote.client import Query, format_path
from homeserver.remote.errors import RemoteError, RemoteUnreachable

logger = logging.getLogger(__name__)

# Bounds on what we take from one answer (the client also bounds the body size).
MAX_FETCHED_PDUS: Final = 5_000
DEFAULT_MISSING_EVENTS_LIMIT: Final = 10
# One fetch waits at most this long (the federation client's own limit is 60 s).
REQUEST_TIMEOUT_S: Final = 10.0

T = TypeVar("T")

# Monotonic deadline for all fetches made in the current context (None: per request only).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "federation_fetch_deadline", default=None
)


@contextlib.contextmanager
def fetch_budget(seconds: float) -> Iterator[None]:
    """Bound every fetch made in this context (and tasks started from it) to `seconds` in all;
    a budget already in force is never extended."""
    deadline = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(deadline if current is None else min(current, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def _time_left() -> float:
    deadline = _deadline.get()
    if deadline is None:
        return REQUEST_TIMEOUT_S
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed("the time allowed for fetching while handling this request is spent")
    return min(REQUEST_TIMEOUT_S, left)


async def _bounded(request: Awaitable[T]) -> T:
    timeout_s = _time_left()
    try:
        async with asyncio.timeout(timeout_s):
            return await request
    except TimeoutError:
        raise FetchFailed(f"no answer within {timeout_s:.1f} s") from None


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
            body = await _bounded(self._requester.post_json(destination, path, content))
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
            return await _bounded(self._requester.get_json(destination, path, query))
        except (RemoteError, RemoteUnreachable) as exc:
            raise FetchFailed(str(exc)) from None


def _pdus(body: Any, key: str) -> list[Mapping[str, Any]]:
    value = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(value, list):
        raise FetchFailed(f"answer has no {key!r} list")
    if len(value) > MAX_FETCHED_PDUS:
        raise FetchFailed(f"answer has {len(value)} PDUs in {key!r}, over {MAX_FETCHED_PDUS}")
    return [pdu for pdu in value if isinstance(pdu, Mapping)]
