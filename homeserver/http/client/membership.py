"""Room membership endpoints (C-S "Room membership"; joining.yaml, inviting.yaml, leaving.yaml,
kicking.yaml, banning.yaml, knocking.yaml, list_joined_rooms.yaml)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth, Handler
from homeserver.http.client.body import optional_str, required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.membership import MembershipService


class Moderation(Protocol):
    """`MembershipService.kick`, `.ban` or `.unban`."""

    def __call__(
        self, sender: str, room_id: str, target: str, *, reason: str | None = None
    ) -> Awaitable[None]: ...


async def body_or_empty(request: web.Request) -> dict[str, Any]:
    """The JSON body; clients often send none to /join, /leave or /forget."""
    if not request.body_exists:
        return {}
    return await read_json_object(request)


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, membership: MembershipService) -> None:
    @auth.user(ratelimit=True)
    async def join(request: web.Request, requester: Requester) -> web.Response:
        body = await body_or_empty(request)
        target = request.match_info.get("roomIdOrAlias") or request.match_info["roomId"]
        room_id = await membership.join(
            requester.user_id,
            target,
            reason=optional_str(body, "reason"),
            via=request.query.getall("via", []) + request.query.getall("server_name", []),
            guest=requester.is_guest,
        )
        return json_response({"room_id": room_id})

    @auth.user(ratelimit=True)
    async def knock(request: web.Request, requester: Requester) -> web.Response:
        body = await body_or_empty(request)
        room_id = await membership.knock(
            requester.user_id,
            request.match_info["roomIdOrAlias"],
            reason=optional_str(body, "reason"),
            via=request.query.getall("via", []) + request.query.getall("server_name", []),
        )
        return json_response({"room_id": room_id})

    @auth.user(ratelimit=True)
    async def invite(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        await membership.invite(
            requester.user_id,
            request.match_info["roomId"],
            required_str(body, "user_id"),
            reason=optional_str(body, "reason"),
        )
        return json_response({})

    @auth.user(ratelimit=True)
    async def leave(request: web.Request, requester: Requester) -> web.Response:
        body = await body_or_empty(request)
        await membership.leave(
            requester.user_id, request.match_info["roomId"], reason=optional_str(body, "reason")
        )
        return json_response({})

    @auth.user
    async def forget(request: web.Request, requester: Requester) -> web.Response:
        await body_or_empty(request)  # `{}` or nothing; a broken body is still M_NOT_JSON
        await membership.forget(requester.user_id, request.match_info["roomId"])
        return json_response({})

    def moderation(action: Moderation) -> Handler:
        @auth.user(ratelimit=True)
        async def handler(request: web.Request, requester: Requester) -> web.Response:
            body = await read_json_object(request)
            await action(
                requester.user_id,
                request.match_info["roomId"],
                required_str(body, "user_id"),
                reason=optional_str(body, "reason"),
            )
            return json_response({})

        return handler

    @auth.user
    async def joined_rooms(request: web.Request, requester: Requester) -> web.Response:
        return json_response({"joined_rooms": await membership.joined_rooms(requester.user_id)})

    add_client_route(router, "POST", "/join/{roomIdOrAlias}", join)
    add_client_route(router, "POST", "/rooms/{roomId}/join", join)
    add_client_route(router, "POST", "/knock/{roomIdOrAlias}", knock)
    add_client_route(router, "POST", "/rooms/{roomId}/invite", invite)
    add_client_route(router, "POST", "/rooms/{roomId}/leave", leave)
    add_client_route(router, "POST", "/rooms/{roomId}/forget", forget)
    add_client_route(router, "POST", "/rooms/{roomId}/kick", moderation(membership.kick))
    add_client_route(router, "POST", "/rooms/{roomId}/ban", moderation(membership.ban))
    add_client_route(router, "POST", "/rooms/{roomId}/unban", moderation(membership.unban))
    add_client_route(router, "GET", "/joined_rooms", joined_rooms)
