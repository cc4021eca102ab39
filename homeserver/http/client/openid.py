"""POST /user/{userId}/openid/request_token (C-S "OpenID") and its federation counterpart
GET /_matrix/federation/v1/openid/userinfo (S2S "OpenID"), which third parties call without
X-Matrix authentication, on the federation listener. The rules are in
homeserver/services/openid.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.openid import OpenIdTokens

USERINFO_PATH = "/_matrix/federation/v1/openid/userinfo"


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, tokens: OpenIdTokens) -> None:
    @auth.user(ratelimit=True)
    async def request_token(request: web.Request, requester: Requester) -> web.Response:
        await read_json_object(request)  # "An empty object. Reserved for future expansion."
        user_id = request.match_info["userId"]
        return json_response(await tokens.request_token(requester.user_id, user_id))

    add_client_route(router, "POST", "/user/{userId}/openid/request_token", request_token)


def add_userinfo_route(router: web.UrlDispatcher, tokens: OpenIdTokens) -> None:
    async def userinfo(request: web.Request) -> web.Response:
        return json_response(await tokens.user_info(request.query.get("access_token")))

    router.add_get(USERINFO_PATH, userinfo)
