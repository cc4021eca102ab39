"""S2S "Device Management" and "End-to-End Encryption": `GET /v1/user/devices/{userId}`,
`POST /v1/user/keys/query`, `POST /v1/user/keys/claim`, and S2S "Spaces":
`GET /v1/hierarchy/{roomId}`. The rules live in homeserver/services/federation_user_keys.py
and homeserver/services/space_hierarchy.py.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.http.json_io import json_response
from homeserver.services.federation_user_keys import FederationUserKeys
from homeserver.services.space_hierarchy import SpaceHierarchy, parse_bool_param

PREFIX = "/_matrix/federation/v1"


def add_routes(
    router: web.UrlDispatcher,
    auth: FederationAuth,
    user_keys: FederationUserKeys,
    hierarchy: SpaceHierarchy,
) -> None:
    @auth
    async def user_devices(request: web.Request, fed: FederationRequest) -> web.Response:
        return json_response(await user_keys.get_devices(request.match_info["userId"]))

    @auth
    async def keys_query(request: web.Request, fed: FederationRequest) -> web.Response:
        return json_response(await user_keys.query_keys(fed.body()))

    @auth
    async def keys_claim(request: web.Request, fed: FederationRequest) -> web.Response:
        return json_response(await user_keys.claim_keys(fed.body()))

    @auth
    async def space_hierarchy(request: web.Request, fed: FederationRequest) -> web.Response:
        suggested_only = parse_bool_param(request.query.get("suggested_only"), "suggested_only")
        body = await hierarchy.federation_hierarchy(
            fed.origin, request.match_info["roomId"], suggested_only=suggested_only
        )
        return json_response(body)

    router.add_get(PREFIX + "/user/devices/{userId}", user_devices)
    router.add_post(PREFIX + "/user/keys/query", keys_query)
    router.add_post(PREFIX + "/user/keys/claim", keys_claim)
    router.add_get(PREFIX + "/hierarchy/{roomId}", space_hierarchy)
