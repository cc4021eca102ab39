"""POST /search (C-S "Server Side Search", `search.yaml`); the rules are in
homeserver/services/search.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.client_events import Viewer
from homeserver.services.search import SearchService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, search: SearchService) -> None:
    @auth.user(ratelimit=True)
    async def search_handler(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        viewer = Viewer(requester.user_id, requester.device_id)
        answer = await search.search(viewer, body, request.query.get("next_batch"))
        return json_response(answer)

    add_client_route(router, "POST", "/search", search_handler)
