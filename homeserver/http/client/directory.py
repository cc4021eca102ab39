"""Room aliases and the published room directory (C-S "Room aliases", "Published room
directory"; directory.yaml, list_public_rooms.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_str, required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.aliases import AliasService
from homeserver.services.auth import Requester
from homeserver.services.room_directory import (
    PublicRoomsQuery,
    RoomDirectoryService,
    parse_public_rooms_filter,
)


def _limit_param(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must be an integer") from None


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    aliases: AliasService,
    directory: RoomDirectoryService,
) -> None:
    # --- aliases --------------------------------------------------------------------------

    @auth.user
    async def put_alias(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        room_id = required_str(body, "room_id")
        await aliases.create_alias(requester.user_id, request.match_info["roomAlias"], room_id)
        return json_response({})

    async def get_alias(request: web.Request) -> web.Response:
        resolved = await aliases.resolve_alias(request.match_info["roomAlias"])
        return json_response({"room_id": resolved.room_id, "servers": resolved.servers})

    @auth.user
    async def delete_alias(request: web.Request, requester: Requester) -> web.Response:
        await aliases.delete_alias(
            requester.user_id, requester.is_admin, request.match_info["roomAlias"]
        )
        return json_response({})

    @auth.user
    async def room_aliases(request: web.Request, requester: Requester) -> web.Response:
        found = await aliases.local_aliases(requester.user_id, request.match_info["roomId"])
        return json_response({"aliases": found})

    # --- published room directory ---------------------------------------------------------

    async def get_visibility(request: web.Request) -> web.Response:
        visibility = await directory.get_visibility(request.match_info["roomId"])
        return json_response({"visibility": visibility})

    @auth.user
    async def put_visibility(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        await directory.set_visibility(
            requester.user_id,
            requester.is_admin,
            request.match_info["roomId"],
            optional_str(body, "visibility") or "public",
        )
        return json_response({})

    @auth.optional
    async def get_public_rooms(request: web.Request, requester: Requester | None) -> web.Response:
        query = PublicRoomsQuery(limit=_limit_param(request), since=request.query.get("since"))
        return json_response(await directory.list_public_rooms(query, request.query.get("server")))

    @auth.user
    async def post_public_rooms(request: web.Request, requester: Requester) -> web.Response:
        query = parse_public_rooms_filter(await read_json_object(request))
        return json_response(await directory.list_public_rooms(query, request.query.get("server")))

    add_client_route(router, "PUT", "/directory/room/{roomAlias}", put_alias)
    add_client_route(router, "GET", "/directory/room/{roomAlias}", get_alias)
    add_client_route(router, "DELETE", "/directory/room/{roomAlias}", delete_alias)
    add_client_route(router, "GET", "/rooms/{roomId}/aliases", room_aliases)
    add_client_route(router, "GET", "/directory/list/room/{roomId}", get_visibility)
    add_client_route(router, "PUT", "/directory/list/room/{roomId}", put_visibility)
    add_client_route(router, "GET", "/publicRooms", get_public_rooms)
    add_client_route(router, "POST", "/publicRooms", post_public_rooms)
