"""Membership handshakes served to other servers (S2S "Joining Rooms", "Leaving Rooms",
"Knocking upon a room", "Inviting to a room"): `make_join`, `send_join` (v2), `make_leave`,
`send_leave` (v2), `make_knock`, `send_knock`, `invite` (v2). The rules live in
homeserver/services/federation_membership.py and federation_invites.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.http.json_io import json_response
from homeserver.services.federation_invites import InviteReceiver
from homeserver.services.federation_membership import ResidentMembership

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def _pdu(fed: FederationRequest) -> dict[str, Any]:
    # send_join/send_leave/send_knock: the body is the signed membership event itself.
    return fed.body()


def add_routes(
    router: web.UrlDispatcher,
    auth: FederationAuth,
    membership: ResidentMembership,
    invites: InviteReceiver,
) -> None:
    @auth
    async def make_join(request: web.Request, fed: FederationRequest) -> web.Response:
        # joins-v1.yaml: `ver` "defaults to [1]" when absent.
        versions = request.query.getall("ver", []) or ["1"]
        room_id, user_id = request.match_info["roomId"], request.match_info["userId"]
        body = await membership.make_membership(fed.origin, room_id, user_id, "join", versions)
        return json_response(body)

    @auth
    async def make_leave(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, user_id = request.match_info["roomId"], request.match_info["userId"]
        body = await membership.make_membership(fed.origin, room_id, user_id, "leave", None)
        return json_response(body)

    @auth
    async def make_knock(request: web.Request, fed: FederationRequest) -> web.Response:
        versions = request.query.getall("ver", [])
        if not versions:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter ver")
        room_id, user_id = request.match_info["roomId"], request.match_info["userId"]
        body = await membership.make_membership(fed.origin, room_id, user_id, "knock", versions)
        return json_response(body)

    @auth
    async def send_join(request: web.Request, fed: FederationRequest) -> web.Response:
        omit_members = request.query.get("omit_members", "false").lower() == "true"
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        body = await membership.send_join(fed.origin, room_id, event_id, _pdu(fed), omit_members)
        return json_response(body)

    @auth
    async def send_leave(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        return json_response(await membership.send_leave(fed.origin, room_id, event_id, _pdu(fed)))

    @auth
    async def send_knock(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        return json_response(await membership.send_knock(fed.origin, room_id, event_id, _pdu(fed)))

    @auth
    async def invite(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        return json_response(await invites.on_invite(fed.origin, room_id, event_id, fed.body()))

    router.add_get(V1 + "/make_join/{roomId}/{userId}", make_join)
    router.add_put(V2 + "/send_join/{roomId}/{eventId}", send_join)
    router.add_get(V1 + "/make_leave/{roomId}/{userId}", make_leave)
    router.add_put(V2 + "/send_leave/{roomId}/{eventId}", send_leave)
    router.add_get(V1 + "/make_knock/{roomId}/{userId}", make_knock)
    router.add_put(V1 + "/send_knock/{roomId}/{eventId}", send_knock)
    router.add_put(V2 + "/invite/{roomId}/{eventId}", invite)
