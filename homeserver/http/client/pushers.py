"""`GET /pushers` and `POST /pushers/set` (C-S "Push Notifications", pusher.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.pushers import PusherService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, pushers: PusherService) -> None:
    @auth.user
    async def get_pushers(request: web.Request, requester: Requester) -> web.Response:
        return json_response({"pushers": await pushers.get_pushers(requester.user_id)})

    @auth.user(ratelimit=True)
    async def set_pusher(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        await pushers.set_pusher(requester.user_id, requester.device_id, body)
        return json_response({})

    add_client_route(router, "GET", "/pushers", get_pushers)
    add_client_route(router, "POST", "/pushers/set", set_pusher)
