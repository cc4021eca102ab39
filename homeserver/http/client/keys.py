"""End-to-end encryption keys (C-S "End-to-End Encryption", keys.yaml, cross_signing.yaml):
POST /keys/upload, /keys/query, /keys/claim, GET /keys/changes,
POST /keys/device_signing/upload (user-interactive auth when the spec requires it),
POST /keys/signatures/upload. The rules live in homeserver/services/e2e_keys.py and
homeserver/services/e2e_cross_signing.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.e2e_cross_signing import CrossSigning
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.sync_token import SyncToken
from homeserver.services.uia import UserInteractiveAuth


def _device_id(requester: Requester) -> str:
    if requester.device_id is None:
        raise MatrixError(400, "M_UNKNOWN", "This access token has no device")
    return requester.device_id


def _token_param(request: web.Request, name: str) -> SyncToken:
    value = request.query.get(name)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing {name!r} parameter")
    return SyncToken.parse(value)


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    keys: E2eKeysService,
    cross_signing: CrossSigning,
    uia: UserInteractiveAuth,
) -> None:
    @auth.user
    async def upload(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        answer = await keys.upload_keys(requester.user_id, _device_id(requester), body)
        return json_response(answer)

    @auth.user
    async def query(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        return json_response(await keys.query_keys(requester.user_id, body))

    @auth.user
    async def claim(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        return json_response(await keys.claim_keys(body))

    @auth.user
    async def changes(request: web.Request, requester: Requester) -> web.Response:
        since, until = _token_param(request, "from"), _token_param(request, "to")
        changed, left = await keys.device_list_delta(requester.user_id, since, until)
        return json_response({"changed": sorted(changed), "left": sorted(left)})

    # Rate limited: each UIA attempt may be a password guess.
    @auth.user(ratelimit=True)
    async def device_signing_upload(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        if await cross_signing.needs_uia(requester.user_id, body):
            await uia.authenticate(
                body,
                operation="device_signing_upload",
                flows=await uia.flows_for_user(requester.user_id),
                user_id=requester.user_id,
            )
        await cross_signing.upload_signing_keys(requester.user_id, body)
        return json_response({})

    @auth.user
    async def signatures_upload(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        return json_response(await cross_signing.upload_signatures(requester.user_id, body))

    add_client_route(router, "POST", "/keys/upload", upload)
    add_client_route(router, "POST", "/keys/query", query)
    add_client_route(router, "POST", "/keys/claim", claim)
    add_client_route(router, "GET", "/keys/changes", changes)
    add_client_route(router, "POST", "/keys/device_signing/upload", device_signing_upload)
    add_client_route(router, "POST", "/keys/signatures/upload", signatures_upload)
