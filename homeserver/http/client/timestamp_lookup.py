"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts=…&dir=f|b
(`room_event_by_timestamp.yaml`); the lookup is homeserver/services/timestamp_lookup.py.

`ts` (ms since the Unix epoch) and `dir` are required: missing is 400 `M_MISSING_PARAM`,
malformed 400 `M_INVALID_PARAM`.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.room_reads import parse_direction
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.timestamp_lookup import TimestampLookup

V1: Final = ("v1",)
_MAX_TS: Final = 2**63 - 1


def parse_ts(value: str | None) -> int:
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'ts' parameter")
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > _MAX_TS:
        raise MatrixError(400, "M_INVALID_PARAM", "'ts' must be a timestamp in milliseconds")
    return int(value)


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, lookup: TimestampLookup) -> None:
    @auth.user
    async def timestamp_to_event(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        ts = parse_ts(query.get("ts"))
        direction = parse_direction(query.get("dir"), None)
        found = await lookup.closest_event(
            request.match_info["roomId"], requester.user_id, ts, direction
        )
        return json_response(found.to_json())

    add_client_route(
        router, "GET", "/rooms/{roomId}/timestamp_to_event", timestamp_to_event, versions=V1
    )
