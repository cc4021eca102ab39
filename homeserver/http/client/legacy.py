"""Deprecated endpoints still in the spec, for clients and tools that use them:
GET /rooms/{roomId}/initialSync (`room_initial_sync.yaml`), GET /initialSync, GET /events
and GET /events/{eventId} (`old_sync.yaml`), and the peeking GET /events?room_id=
(`peeking_events.yaml`, C-S "Room Previews"). Guests may call the room initialSync and
/events (C-S "Guest Access", homeserver/http/client/guest_access.py).

Query parameters: `limit` (events per room, default 10), `archived` (true/false), `from` (a
stream token; anything else is 400 `M_INVALID_PARAM`, old_sync.yaml "Bad pagination `from`
parameter"), `timeout` (ms, default 30 s as Synapse, at most 2 minutes), `room_id`.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from federation.ids import is_valid_room_id
from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.room_reads import viewer_of
from homeserver.http.client.routing import add_client_route
from homeserver.http.client.sync import parse_bool_param, parse_timeout
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.event_stream import EventStream
from homeserver.services.legacy_sync import DEFAULT_LIMIT, LegacySync
from homeserver.services.pagination import parse_limit
from homeserver.services.tokens import InvalidToken, StreamToken, parse_room_token

DEFAULT_TIMEOUT_MS: Final = 30_000
MAX_TIMEOUT_MS: Final = 120_000
# Per room; /initialSync covers every room of the user at once.
MAX_INITIAL_SYNC_LIMIT: Final = 100


def parse_stream_token(value: str | None) -> int | None:
    """The `from` of /events: a stream position, or None when absent."""
    if value is None:
        return None
    try:
        token = parse_room_token(value)
    except InvalidToken:
        token = None
    if not isinstance(token, StreamToken):
        raise MatrixError(400, "M_INVALID_PARAM", "Bad pagination 'from' token")
    return token.position


def parse_stream_timeout(value: str | None) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_MS
    return min(parse_timeout(value), MAX_TIMEOUT_MS)


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, legacy: LegacySync, stream: EventStream
) -> None:
    @auth.user
    async def room_initial_sync(request: web.Request, requester: Requester) -> web.Response:
        limit = parse_limit(request.query.get("limit"), default=DEFAULT_LIMIT)
        body = await legacy.room_initial_sync(
            request.match_info["roomId"], viewer_of(requester), limit
        )
        return json_response(body)

    @auth.user
    async def initial_sync(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        limit = parse_limit(
            query.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_INITIAL_SYNC_LIMIT
        )
        archived = parse_bool_param(query.get("archived"), "archived")
        return json_response(await legacy.initial_sync(viewer_of(requester), limit, archived))

    @auth.user
    async def events(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        room_id = query.get("room_id")
        if room_id is not None and not is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid 'room_id'")
        chunk = await stream.events(
            viewer_of(requester),
            from_position=parse_stream_token(query.get("from")),
            timeout_ms=parse_stream_timeout(query.get("timeout")),
            room_id=room_id,
        )
        return json_response(chunk.to_json())

    @auth.user
    async def event_by_id(request: web.Request, requester: Requester) -> web.Response:
        event = await stream.get_event(request.match_info["eventId"], viewer_of(requester))
        return json_response(event)

    add_client_route(router, "GET", "/rooms/{roomId}/initialSync", room_initial_sync)
    add_client_route(router, "GET", "/initialSync", initial_sync)
    add_client_route(router, "GET", "/events", events)
    add_client_route(router, "GET", "/events/{eventId}", event_by_id)
