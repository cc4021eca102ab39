"""Profiles: GET /profile/{userId}, GET/PUT/DELETE /profile/{userId}/{keyName} (C-S
"Profiles", profile.yaml). Reading needs no access token; changing one's profile does."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.profiles import ProfileService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, profiles: ProfileService) -> None:
    async def get_profile(request: web.Request) -> web.Response:
        return json_response(await profiles.get_profile(request.match_info["userId"]))

    async def get_field(request: web.Request) -> web.Response:
        match = request.match_info
        return json_response(await profiles.get_profile_field(match["userId"], match["keyName"]))

    @auth.user(ratelimit=True)
    async def put_field(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        match = request.match_info
        await profiles.set_profile_field(
            requester.user_id, requester.is_admin, match["userId"], match["keyName"], body
        )
        return json_response({})

    @auth.user
    async def delete_field(request: web.Request, requester: Requester) -> web.Response:
        match = request.match_info
        await profiles.delete_profile_field(
            requester.user_id, requester.is_admin, match["userId"], match["keyName"]
        )
        return json_response({})

    add_client_route(router, "GET", "/profile/{userId}", get_profile)
    add_client_route(router, "GET", "/profile/{userId}/{keyName}", get_field)
    add_client_route(router, "PUT", "/profile/{userId}/{keyName}", put_field)
    add_client_route(router, "DELETE", "/profile/{userId}/{keyName}", delete_field)
