"""Relations and threads: GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
[/{relType}[/{eventType}]] and GET /_matrix/client/v1/rooms/{roomId}/threads.

C-S "Relationships API" (`relations.yaml`) and "Querying threads in a room"
(`threads_list.yaml`). Both live under v1 only.
"""

from __future__ import annotations

from typing import Final, Literal

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.room_reads import parse_direction, parse_token, viewer_of
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.pagination import parse_limit
from homeserver.services.relations import (
    DEFAULT_RELATIONS_LIMIT,
    DEFAULT_THREADS_LIMIT,
    MAX_RELATIONS_LIMIT,
    MAX_THREADS_LIMIT,
    Relations,
    RelationsQuery,
)

V1: Final = ("v1",)


def parse_recurse(value: str | None) -> bool | None:
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise MatrixError(400, "M_INVALID_PARAM", "'recurse' must be true or false")


def parse_include(value: str | None) -> Literal["all", "participated"]:
    if value is None or value == "all":
        return "all"
    if value == "participated":
        return "participated"
    raise MatrixError(400, "M_INVALID_PARAM", "'include' must be 'all' or 'participated'")


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, relations: Relations) -> None:
    @auth.user
    async def get_relations(request: web.Request, requester: Requester) -> web.Response:
        match, query = request.match_info, request.query
        relations_query = RelationsQuery(
            relation_type=match.get("relType"),
            event_type=match.get("eventType"),
            from_token=parse_token(query.get("from"), "from"),
            to_token=parse_token(query.get("to"), "to"),
            limit=parse_limit(
                query.get("limit"), default=DEFAULT_RELATIONS_LIMIT, maximum=MAX_RELATIONS_LIMIT
            ),
            direction=parse_direction(query.get("dir"), "b"),
            recurse=parse_recurse(query.get("recurse")),
        )
        body = await relations.children(
            match["roomId"], match["eventId"], viewer_of(requester), relations_query
        )
        return json_response(body)

    @auth.user
    async def get_threads(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        limit = parse_limit(
            query.get("limit"), default=DEFAULT_THREADS_LIMIT, maximum=MAX_THREADS_LIMIT
        )
        if limit == 0:
            # threads_list.yaml: "Must be an integer greater than zero."
            raise MatrixError(400, "M_INVALID_PARAM", "'limit' must be greater than zero")
        body = await relations.threads(
            request.match_info["roomId"],
            viewer_of(requester),
            include=parse_include(query.get("include")),
            limit=limit,
            from_token=parse_token(query.get("from"), "from"),
        )
        return json_response(body)

    base = "/rooms/{roomId}/relations/{eventId}"
    add_client_route(router, "GET", base, get_relations, versions=V1)
    add_client_route(router, "GET", base + "/{relType}", get_relations, versions=V1)
    add_client_route(router, "GET", base + "/{relType}/{eventType}", get_relations, versions=V1)
    add_client_route(router, "GET", "/rooms/{roomId}/threads", get_threads, versions=V1)
