"""`GET /capabilities` (C-S "Capabilities negotiation", capabilities.yaml): what this server
lets a user do, so clients can hide what it does not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from federation.room_versions import RoomVersion
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester


def capabilities(
    room_versions: Mapping[str, RoomVersion], default_room_version: str
) -> dict[str, Any]:
    return {
        "m.change_password": {"enabled": True},
        "m.room_versions": {
            "default": default_room_version,
            "available": {
                identifier: version.stability.value for identifier, version in room_versions.items()
            },
        },
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        # No third-party identifiers (email, phone) are bound to accounts here.
        "m.3pid_changes": {"enabled": False},
        # POST /login/get_token (m.login.token) is not offered.
        "m.get_login_token": {"enabled": False},
    }


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    room_versions: Mapping[str, RoomVersion],
    default_room_version: str,
) -> None:
    body = {"capabilities": capabilities(room_versions, default_room_version)}

    @auth.user
    async def get_capabilities(request: web.Request, requester: Requester) -> web.Response:
        return json_response(body)

    add_client_route(router, "GET", "/capabilities", get_capabilities)
