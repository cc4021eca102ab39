"""Room tags (C-S "Room Tagging", tags.yaml), kept as the room's `m.tag` account data."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.account_data import own_user_id, room_id_param
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.account_data import AccountDataService
from homeserver.services.auth import Requester


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, account_data: AccountDataService
) -> None:
    @auth.user
    async def get_tags(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "tags")
        tags = await account_data.get_tags(user_id, room_id_param(request))
        return json_response({"tags": tags})

    @auth.user
    async def put_tag(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "tags")
        room_id = room_id_param(request)
        body = await read_json_object(request)
        await account_data.set_tag(user_id, room_id, request.match_info["tag"], body)
        return json_response({})

    @auth.user
    async def delete_tag(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "tags")
        await account_data.delete_tag(user_id, room_id_param(request), request.match_info["tag"])
        return json_response({})

    add_client_route(router, "GET", "/user/{userId}/rooms/{roomId}/tags", get_tags)
    tag_path = "/user/{userId}/rooms/{roomId}/tags/{tag}"
    add_client_route(router, "PUT", tag_path, put_tag)
    add_client_route(router, "DELETE", tag_path, delete_tag)
