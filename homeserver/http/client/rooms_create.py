"""POST /createRoom (C-S "Creation", create_room.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.rooms import RoomCreationService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, rooms: RoomCreationService) -> None:
    @auth.user(ratelimit=True)
    async def create_room(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        room_id = await rooms.create_room(requester.user_id, body)
        return json_response({"room_id": room_id})

    add_client_route(router, "POST", "/createRoom", create_room)
