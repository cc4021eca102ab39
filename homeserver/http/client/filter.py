"""`POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}` (filter.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.account_data import own_user_id
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.sync_filters import SyncFilters


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, filters: SyncFilters) -> None:
    @auth.user
    async def post_filter(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "filters")
        body = await read_json_object(request)
        return json_response({"filter_id": await filters.create(user_id, body)})

    @auth.user
    async def get_filter(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "filters")
        stored = await filters.get(user_id, request.match_info["filterId"])
        return json_response(stored.to_json())

    add_client_route(router, "POST", "/user/{userId}/filter", post_filter)
    add_client_route(router, "GET", "/user/{userId}/filter/{filterId}", get_filter)
