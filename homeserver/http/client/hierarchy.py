"""C-S "Spaces": `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` (space_hierarchy.yaml).
The walk and its visibility rules live in homeserver/services/space_hierarchy.py."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.space_hierarchy import (
    SpaceHierarchy,
    parse_bool_param,
    parse_int_param,
)

V1: Final = ("v1",)


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, hierarchy: SpaceHierarchy) -> None:
    @auth.user
    async def get_hierarchy(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        body = await hierarchy.client_hierarchy(
            requester.user_id,
            request.match_info["roomId"],
            suggested_only=parse_bool_param(query.get("suggested_only"), "suggested_only"),
            limit=parse_int_param(query.get("limit"), "limit"),
            max_depth=parse_int_param(query.get("max_depth"), "max_depth"),
            from_token=query.get("from"),
        )
        return json_response(body)

    add_client_route(router, "GET", "/rooms/{roomId}/hierarchy", get_hierarchy, versions=V1)
