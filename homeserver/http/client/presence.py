"""`GET`/`PUT /presence/{userId}/status` (C-S "Presence", presence.yaml).

With presence disabled (`presence.enabled: false`) a PUT is accepted and ignored and every
user reads as offline, so clients need no special case.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.ids import is_valid_user_id
from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_str, required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.presence import OFFLINE, PRESENCE_STATES, PresenceService


def _user_id_param(request: web.Request) -> str:
    user_id = request.match_info["userId"]
    if not is_valid_user_id(user_id, historical=True):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
    return user_id


def parse_status_body(body: dict[str, Any]) -> tuple[str, str | None, bool]:
    """`(presence, status_msg, keep_status)`; `keep_status` when `status_msg` is absent."""
    presence = required_str(body, "presence")
    if presence not in PRESENCE_STATES:
        raise MatrixError(
            400, "M_INVALID_PARAM", "'presence' must be online, offline or unavailable"
        )
    return presence, optional_str(body, "status_msg"), "status_msg" not in body


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, presence: PresenceService | None
) -> None:
    @auth.user(ratelimit=True)
    async def put_status(request: web.Request, requester: Requester) -> web.Response:
        user_id = _user_id_param(request)
        if user_id != requester.user_id:
            # presence.yaml: "You cannot set the presence state of another user."
            raise MatrixError(403, "M_FORBIDDEN", "Cannot set the presence of another user")
        state, status_msg, keep_status = parse_status_body(await read_json_object(request))
        if presence is not None:
            await presence.set_status(user_id, state, status_msg, keep_status=keep_status)
        return json_response({})

    @auth.user
    async def get_status(request: web.Request, requester: Requester) -> web.Response:
        user_id = _user_id_param(request)
        if presence is None:
            return json_response({"presence": OFFLINE})
        if not await presence.may_see(requester.user_id, user_id):
            raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to see their presence")
        found = presence.get(user_id)
        if found is None:
            return json_response({"presence": OFFLINE})
        return json_response(found.content(presence.now_ms()))

    add_client_route(router, "PUT", "/presence/{userId}/status", put_status)
    add_client_route(router, "GET", "/presence/{userId}/status", get_status)
