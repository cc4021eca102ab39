"""Reading rooms: GET /rooms/{roomId}/event/{eventId}, /state, /state/{eventType}/{stateKey},
/members, /joined_members, /context/{eventId} and /messages.

C-S "Getting events for a room" (`rooms.yaml`, `message_pagination.yaml`,
`event_context.yaml`). Query parameters are checked here: a bad token, direction, limit,
membership or filter is 400 `M_INVALID_PARAM` (a filter that is not JSON: `M_NOT_JSON`).
"""

from __future__ import annotations

import json
from typing import Final, Literal

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.room_send import device_key
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.client_events import Viewer
from homeserver.services.filters import FilterError, RoomEventFilter, parse_filter
from homeserver.services.pagination import RoomPaginator, parse_limit
from homeserver.services.room_reads import MEMBERSHIPS, RoomReader
from homeserver.services.tokens import InvalidToken, RoomToken, parse_room_token

MAX_CONTEXT_LIMIT: Final = 100


def viewer_of(requester: Requester) -> Viewer:
    # The transaction ID scope the send endpoints store (`room_send.device_key`).
    return Viewer(requester.user_id, device_key(requester))


def parse_token(value: str | None, name: str) -> RoomToken | None:
    if value is None:
        return None
    try:
        return parse_room_token(value)
    except InvalidToken:
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid '{name}' token") from None


def parse_direction(value: str | None, default: Literal["b", "f"] | None) -> Literal["b", "f"]:
    if value is None:
        if default is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'dir' parameter")
        return default
    if value == "b":
        return "b"
    if value == "f":
        return "f"
    raise MatrixError(400, "M_INVALID_PARAM", "'dir' must be 'b' or 'f'")


def parse_room_event_filter(value: str | None) -> RoomEventFilter | None:
    """The `filter` query parameter: a RoomEventFilter as JSON."""
    if value is None or value == "":
        return None
    try:
        obj = json.loads(value)
    except ValueError:
        raise MatrixError(400, "M_NOT_JSON", "'filter' is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MatrixError(400, "M_BAD_JSON", "'filter' must be a JSON object")
    try:
        # Validated as the timeline filter of a whole filter: the same rules and messages.
        return parse_filter({"room": {"timeline": obj}}).room.timeline
    except FilterError as e:
        raise MatrixError(400, e.errcode, e.message.replace("room.timeline.", "")) from None


def parse_membership(value: str | None, name: str) -> str | None:
    if value is None or value in MEMBERSHIPS:
        return value
    raise MatrixError(400, "M_INVALID_PARAM", f"'{name}' must be one of {sorted(MEMBERSHIPS)}")


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, reader: RoomReader, paginator: RoomPaginator
) -> None:
    @auth.user
    async def get_event(request: web.Request, requester: Requester) -> web.Response:
        match = request.match_info
        event = await reader.get_event(match["roomId"], match["eventId"], viewer_of(requester))
        return json_response(event)

    @auth.user
    async def get_state(request: web.Request, requester: Requester) -> web.Response:
        return json_response(
            await reader.get_state(request.match_info["roomId"], viewer_of(requester))
        )

    @auth.user
    async def get_state_event(request: web.Request, requester: Requester) -> web.Response:
        match = request.match_info
        response_format = request.query.get("format", "content")
        if response_format not in ("content", "event"):
            raise MatrixError(400, "M_INVALID_PARAM", "'format' must be 'content' or 'event'")
        event = await reader.get_state_event(
            match["roomId"], match["eventType"], match.get("stateKey", ""), viewer_of(requester)
        )
        return json_response(event if response_format == "event" else event["content"])

    @auth.user
    async def get_members(request: web.Request, requester: Requester) -> web.Response:
        room_id, query = request.match_info["roomId"], request.query
        at = parse_token(query.get("at"), "at")
        chunk = await reader.get_members(
            room_id,
            viewer_of(requester),
            at_key=None if at is None else await paginator.resolve_token(room_id, at),
            membership=parse_membership(query.get("membership"), "membership"),
            not_membership=parse_membership(query.get("not_membership"), "not_membership"),
        )
        return json_response({"chunk": chunk})

    @auth.user
    async def get_joined_members(request: web.Request, requester: Requester) -> web.Response:
        joined = await reader.get_joined_members(request.match_info["roomId"], requester.user_id)
        return json_response({"joined": joined})

    @auth.user
    async def get_context(request: web.Request, requester: Requester) -> web.Response:
        match, query = request.match_info, request.query
        body = await paginator.context(
            match["roomId"],
            match["eventId"],
            viewer_of(requester),
            limit=parse_limit(query.get("limit"), maximum=MAX_CONTEXT_LIMIT),
            event_filter=parse_room_event_filter(query.get("filter")),
        )
        return json_response(body)

    @auth.user
    async def get_messages(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        event_filter = parse_room_event_filter(query.get("filter"))
        default_limit = 10 if event_filter is None or event_filter.limit is None else (
            event_filter.limit
        )
        page = await paginator.messages(
            request.match_info["roomId"],
            viewer_of(requester),
            direction=parse_direction(query.get("dir"), None),
            from_token=parse_token(query.get("from"), "from"),
            to_token=parse_token(query.get("to"), "to"),
            limit=parse_limit(query.get("limit"), default=default_limit),
            event_filter=event_filter,
        )
        body = page.to_json()
        if "from" in query:
            # message_pagination.yaml `start`: "the same as the value given in `from`".
            body["start"] = query["from"]
        return json_response(body)

    add_client_route(router, "GET", "/rooms/{roomId}/event/{eventId}", get_event)
    add_client_route(router, "GET", "/rooms/{roomId}/state", get_state)
    # rooms.yaml: "When an empty string, the trailing slash on this endpoint is optional."
    add_client_route(router, "GET", "/rooms/{roomId}/state/{eventType}", get_state_event)
    add_client_route(
        router, "GET", "/rooms/{roomId}/state/{eventType}/{stateKey:[^/]*}", get_state_event
    )
    add_client_route(router, "GET", "/rooms/{roomId}/members", get_members)
    add_client_route(router, "GET", "/rooms/{roomId}/joined_members", get_joined_members)
    add_client_route(router, "GET", "/rooms/{roomId}/context/{eventId}", get_context)
    add_client_route(router, "GET", "/rooms/{roomId}/messages", get_messages)
