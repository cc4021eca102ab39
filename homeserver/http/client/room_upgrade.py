"""POST /rooms/{roomId}/upgrade (C-S "Room Upgrades", room_upgrades.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.room_upgrade import RoomUpgradeService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, upgrades: RoomUpgradeService) -> None:
    @auth.user(ratelimit=True)
    async def upgrade_room(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        room_id = request.match_info["roomId"]
        replacement = await upgrades.upgrade_room(requester.user_id, room_id, body)
        return json_response({"replacement_room": replacement})

    add_client_route(router, "POST", "/rooms/{roomId}/upgrade", upgrade_room)
