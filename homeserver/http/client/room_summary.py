"""GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (C-S "Room Summaries", v1.15,
`room_summary.yaml`); who may read which summary is in homeserver/services/room_summary.py.
Authentication is optional: rooms open to anyone are summarised without a token."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.room_summary import RoomSummaries

V1: Final = ("v1",)


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, summaries: RoomSummaries) -> None:
    @auth.optional
    async def get_summary(request: web.Request, requester: Requester | None) -> web.Response:
        user_id = requester.user_id if requester is not None else None
        room = request.match_info["roomIdOrAlias"]
        via = request.query.getall("via", [])
        return json_response(await summaries.summary(room, user_id, via))

    add_client_route(router, "GET", "/room_summary/{roomIdOrAlias}", get_summary, versions=V1)
