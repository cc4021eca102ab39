"""Server-side key backups: /room_keys/version[/{version}] and
/room_keys/keys[/{roomId}[/{sessionId}]] (C-S "Server-side key backups", `key_backup.yaml`).
The rules are in homeserver/services/key_backup.py.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.key_backup import (
    KeyBackupService,
    parse_key_data,
    parse_room_sessions,
    parse_rooms,
)

VERSION_PATH = "/room_keys/version/{version}"
KEYS_PATH = "/room_keys/keys"
ROOM_PATH = "/room_keys/keys/{roomId}"
SESSION_PATH = "/room_keys/keys/{roomId}/{sessionId}"


def version_param(request: web.Request) -> str:
    """The required `version` query parameter of the /room_keys/keys endpoints."""
    version = request.query.get("version")
    if version is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'version' query parameter")
    return version


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, backups: KeyBackupService) -> None:
    @auth.user(ratelimit=True)
    async def create_version(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        return json_response({"version": await backups.create_version(requester.user_id, body)})

    @auth.user
    async def get_current_version(request: web.Request, requester: Requester) -> web.Response:
        return json_response(await backups.get_version_info(requester.user_id, None))

    @auth.user
    async def get_version(request: web.Request, requester: Requester) -> web.Response:
        version = request.match_info["version"]
        return json_response(await backups.get_version_info(requester.user_id, version))

    @auth.user(ratelimit=True)
    async def update_version(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        await backups.update_version(requester.user_id, request.match_info["version"], body)
        return json_response({})

    @auth.user
    async def delete_version(request: web.Request, requester: Requester) -> web.Response:
        await backups.delete_version(requester.user_id, request.match_info["version"])
        return json_response({})

    @auth.user
    async def put_keys(request: web.Request, requester: Requester) -> web.Response:
        version = version_param(request)
        body = await read_json_object(request)
        match = request.match_info
        if "sessionId" in match:
            keys = [parse_key_data(match["roomId"], match["sessionId"], body)]
        elif "roomId" in match:
            keys = parse_room_sessions(match["roomId"], body)
        else:
            keys = parse_rooms(body)
        return json_response(await backups.put_keys(requester.user_id, version, keys))

    @auth.user
    async def get_keys(request: web.Request, requester: Requester) -> web.Response:
        match = request.match_info
        return json_response(
            await backups.get_keys(
                requester.user_id,
                version_param(request),
                match.get("roomId"),
                match.get("sessionId"),
            )
        )

    @auth.user
    async def delete_keys(request: web.Request, requester: Requester) -> web.Response:
        match = request.match_info
        return json_response(
            await backups.delete_keys(
                requester.user_id,
                version_param(request),
                match.get("roomId"),
                match.get("sessionId"),
            )
        )

    add_client_route(router, "POST", "/room_keys/version", create_version)
    add_client_route(router, "GET", "/room_keys/version", get_current_version)
    add_client_route(router, "GET", VERSION_PATH, get_version)
    add_client_route(router, "PUT", VERSION_PATH, update_version)
    add_client_route(router, "DELETE", VERSION_PATH, delete_version)
    for path in (KEYS_PATH, ROOM_PATH, SESSION_PATH):
        add_client_route(router, "PUT", path, put_keys)
        add_client_route(router, "GET", path, get_keys)
        add_client_route(router, "DELETE", path, delete_keys)
