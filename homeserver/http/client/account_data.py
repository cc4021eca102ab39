"""Account data, global and per room (C-S "Client Config", account-data.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.account_data import AccountDataService
from homeserver.services.auth import Requester
from homeserver.storage.sync_data import GLOBAL


def own_user_id(request: web.Request, requester: Requester, what: str) -> str:
    """The `{userId}` path parameter, which must be the requester: 403 M_FORBIDDEN otherwise."""
    user_id = request.match_info["userId"]
    if user_id != requester.user_id:
        raise MatrixError(403, "M_FORBIDDEN", f"Cannot access {what} of other users")
    return user_id


def room_id_param(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not room_id.startswith("!") or len(room_id) < 2:
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id!r} is not a room ID")
    return room_id


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, account_data: AccountDataService
) -> None:
    @auth.user
    async def put_global(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "account data")
        body = await read_json_object(request)
        await account_data.set_by_client(user_id, GLOBAL, request.match_info["type"], body)
        return json_response({})

    @auth.user
    async def get_global(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "account data")
        return json_response(await account_data.get(user_id, GLOBAL, request.match_info["type"]))

    @auth.user
    async def put_room(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "account data")
        room_id = room_id_param(request)
        body = await read_json_object(request)
        await account_data.set_by_client(user_id, room_id, request.match_info["type"], body)
        return json_response({})

    @auth.user
    async def get_room(request: web.Request, requester: Requester) -> web.Response:
        user_id = own_user_id(request, requester, "account data")
        room_id = room_id_param(request)
        return json_response(await account_data.get(user_id, room_id, request.match_info["type"]))

    add_client_route(router, "PUT", "/user/{userId}/account_data/{type}", put_global)
    add_client_route(router, "GET", "/user/{userId}/account_data/{type}", get_global)
    room_path = "/user/{userId}/rooms/{roomId}/account_data/{type}"
    add_client_route(router, "PUT", room_path, put_room)
    add_client_route(router, "GET", room_path, get_room)
