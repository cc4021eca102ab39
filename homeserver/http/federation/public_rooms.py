"""S2S "Public Room Directory": `GET` and `POST /v1/publicRooms`, this server's published rooms
for another server's users (the listing rules live in homeserver/services/room_directory.py).

Third-party networks are not supported: `include_all_networks` and `third_party_instance_id`
are accepted and change nothing (only the Matrix network is listed).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.http.json_io import json_response
from homeserver.services.room_directory import (
    PublicRoomsQuery,
    RoomDirectoryService,
    parse_public_rooms_filter,
)

PATH = "/_matrix/federation/v1/publicRooms"


def _limit_param(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must be an integer") from None


def add_routes(
    router: web.UrlDispatcher, auth: FederationAuth, directory: RoomDirectoryService
) -> None:
    @auth
    async def get_public_rooms(request: web.Request, fed: FederationRequest) -> web.Response:
        query = PublicRoomsQuery(limit=_limit_param(request), since=request.query.get("since"))
        # Never `server=`: a server lists only its own rooms over federation.
        return json_response(await directory.list_public_rooms(query))

    @auth
    async def post_public_rooms(request: web.Request, fed: FederationRequest) -> web.Response:
        query = parse_public_rooms_filter(fed.body())
        return json_response(await directory.list_public_rooms(query))

    router.add_get(PATH, get_public_rooms)
    router.add_post(PATH, post_public_rooms)
