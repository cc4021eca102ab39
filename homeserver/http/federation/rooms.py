"""Room reads for other servers: `/event`, `/state`, `/state_ids`, `/event_auth`,
`/backfill`, `/get_missing_events` (S2S "Retrieving events", "Retrieving event authorisation
information", "Backfilling and retrieving missing events"). Access rules live in
homeserver/services/federation_reads.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.http.json_io import json_response
from homeserver.services.federation_reads import FederationReads

PREFIX = "/_matrix/federation/v1"
DEFAULT_MISSING_EVENTS_LIMIT = 10


def _required_query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing query parameter {name}")
    return value


def _int_param(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer")
    return value


def _event_ids(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MatrixError(400, "M_BAD_JSON", f"{name} must be a list of event IDs")
    return list(value)


def add_routes(router: web.UrlDispatcher, auth: FederationAuth, reads: FederationReads) -> None:
    @auth
    async def get_event(request: web.Request, fed: FederationRequest) -> web.Response:
        return json_response(await reads.get_event(fed.origin, request.match_info["eventId"]))

    @auth
    async def get_state(request: web.Request, fed: FederationRequest) -> web.Response:
        event_id = _required_query(request, "event_id")
        room_id = request.match_info["roomId"]
        return json_response(await reads.get_state(fed.origin, room_id, event_id))

    @auth
    async def get_state_ids(request: web.Request, fed: FederationRequest) -> web.Response:
        event_id = _required_query(request, "event_id")
        room_id = request.match_info["roomId"]
        return json_response(await reads.get_state_ids(fed.origin, room_id, event_id))

    @auth
    async def get_event_auth(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        return json_response(await reads.get_event_auth(fed.origin, room_id, event_id))

    @auth
    async def backfill(request: web.Request, fed: FederationRequest) -> web.Response:
        event_ids = request.query.getall("v", [])
        if not event_ids:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter v")
        limit = _int_param(request.query.get("limit"), "limit", 10)
        room_id = request.match_info["roomId"]
        return json_response(await reads.backfill(fed.origin, room_id, event_ids, limit))

    @auth
    async def get_missing_events(request: web.Request, fed: FederationRequest) -> web.Response:
        body = fed.body()
        response = await reads.get_missing_events(
            fed.origin,
            request.match_info["roomId"],
            _event_ids(body.get("earliest_events"), "earliest_events"),
            _event_ids(body.get("latest_events"), "latest_events"),
            _int_param(body.get("limit"), "limit", DEFAULT_MISSING_EVENTS_LIMIT),
            _int_param(body.get("min_depth"), "min_depth", 0),
        )
        return json_response(response)

    router.add_get(PREFIX + "/event/{eventId}", get_event)
    router.add_get(PREFIX + "/state/{roomId}", get_state)
    router.add_get(PREFIX + "/state_ids/{roomId}", get_state_ids)
    router.add_get(PREFIX + "/event_auth/{roomId}/{eventId}", get_event_auth)
    router.add_get(PREFIX + "/backfill/{roomId}", backfill)
    router.add_post(PREFIX + "/get_missing_events/{roomId}", get_missing_events)
