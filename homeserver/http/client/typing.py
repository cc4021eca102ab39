"""`PUT /rooms/{roomId}/typing/{userId}` (C-S "Typing Notifications", typing.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.account_data import room_id_param
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.state import RoomStateCache
from homeserver.services.typing import TypingService


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, typing: TypingService, state: RoomStateCache
) -> None:
    @auth.user(ratelimit=True)
    async def put_typing(request: web.Request, requester: Requester) -> web.Response:
        room_id = room_id_param(request)
        if request.match_info["userId"] != requester.user_id:
            raise MatrixError(403, "M_FORBIDDEN", "Cannot set the typing state of other users")
        body = await read_json_object(request)
        is_typing = body.get("typing")
        if is_typing is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'typing'")
        if not isinstance(is_typing, bool):
            raise MatrixError(400, "M_BAD_JSON", "'typing' must be a boolean")
        timeout = body.get("timeout")
        if (
            is_typing
            and timeout is not None
            and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0)
        ):
            raise MatrixError(400, "M_BAD_JSON", "'timeout' must be a non-negative integer")
        member = await state.get_current_state(room_id, [("m.room.member", requester.user_id)])
        event = member.get(("m.room.member", requester.user_id))
        if event is None or event.membership != "join":
            raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
        await typing.set_typing(room_id, requester.user_id, is_typing, timeout)
        return json_response({})

    add_client_route(router, "PUT", "/rooms/{roomId}/typing/{userId}", put_typing)
