"""Membership handshakes served to other servers (S2S "Joining Rooms", "Leaving Rooms",
"Knocking upon a room", "Inviting to a room"): `make_join`, `send_join` (v1, v2), `make_leave`,
`send_leave` (v1, v2), `make_knock`, `send_knock`, `invite` (v1, v2). The rules live in
homeserver/services/federation_membership.py and federation_invites.py.

The v1 forms are for older servers. They take the same requests (v1 `invite`: the event itself,
with `unsigned.invite_room_state`) and answer the same objects wrapped as `[200, {...}]`
(invites-v1.yaml; the removed joins-v1/leaving-v1 `send_*` had the same shape). v1 `send_join`
never omits members and carries no v2-only fields.
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


def _v1_response(body: dict[str, Any]) -> web.Response:
    """The v1 response form: `[200, body]`."""
    return json_response([200, body])


def invite_v2_body(pdu: dict[str, Any], room_version: str) -> dict[str, Any]:
    """A v1 invite body (the invite event itself) as the v2 request it stands for: the
    stripped state moves from `unsigned.invite_room_state` to `invite_room_state`."""
    unsigned = pdu.get("unsigned")
    invite_state = unsigned.get("invite_room_state", []) if isinstance(unsigned, dict) else []
    return {"event": pdu, "room_version": room_version, "invite_room_state": invite_state}


# invites-v1.yaml: a room we do not know is assumed to be of the versions v1 served, "1".
V1_DEFAULT_ROOM_VERSION = "1"


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

    @auth
    async def send_join_v1(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        body = await membership.send_join(fed.origin, room_id, event_id, _pdu(fed), False)
        v1_fields = ("origin", "state", "auth_chain")
        return _v1_response({field: body[field] for field in v1_fields if field in body})

    @auth
    async def send_leave_v1(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        return _v1_response(await membership.send_leave(fed.origin, room_id, event_id, _pdu(fed)))

    @auth
    async def invite_v1(request: web.Request, fed: FederationRequest) -> web.Response:
        room_id, event_id = request.match_info["roomId"], request.match_info["eventId"]
        known = await invites.room_version_of(room_id)
        body = invite_v2_body(fed.body(), known or V1_DEFAULT_ROOM_VERSION)
        return _v1_response(await invites.on_invite(fed.origin, room_id, event_id, body))

    router.add_get(V1 + "/make_join/{roomId}/{userId}", make_join)
    router.add_put(V1 + "/send_join/{roomId}/{eventId}", send_join_v1)
    router.add_put(V1 + "/send_leave/{roomId}/{eventId}", send_leave_v1)
    router.add_put(V1 + "/invite/{roomId}/{eventId}", invite_v1)
    router.add_put(V2 + "/send_join/{roomId}/{eventId}", send_join)
    router.add_get(V1 + "/make_leave/{roomId}/{userId}", make_leave)
    router.add_put(V2 + "/send_leave/{roomId}/{eventId}", send_leave)
    router.add_get(V1 + "/make_knock/{roomId}/{userId}", make_knock)
    router.add_put(V1 + "/send_knock/{roomId}/{eventId}", send_knock)
    router.add_put(V2 + "/invite/{roomId}/{eventId}", invite)
