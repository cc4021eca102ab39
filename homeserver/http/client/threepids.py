"""Third-party identifiers (C-S "Adding Account Administrative Contact Information",
`administrative_contact.yaml`, and the requestToken endpoints of `registration.yaml`).

Veche supports no third-party identifiers (capabilities advertise `m.3pid_changes`
disabled): an account never has any, and every attempt to validate or add one is refused
with the spec's `M_THREEPID_DENIED` ("Third-party identifier is not allowed"). Removing one
succeeds trivially: there is nothing to remove and no identity server was told anything.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester

# requestToken endpoints: registration, password reset and adding a 3PID, email and phone.
REQUEST_TOKEN_PATHS: Final = tuple(
    f"/{area}/{medium}/requestToken"
    for area in ("register", "account/password", "account/3pid")
    for medium in ("email", "msisdn")
)


def denied() -> MatrixError:
    return MatrixError(
        403, "M_THREEPID_DENIED", "This server does not support third-party identifiers"
    )


def add_routes(router: web.UrlDispatcher, auth: ClientAuth) -> None:
    @auth.user
    async def get_threepids(request: web.Request, requester: Requester) -> web.Response:
        return json_response({"threepids": []})

    async def request_token(request: web.Request) -> web.Response:
        auth.ratelimit_ip(request)
        await read_json_object(request)
        raise denied()

    @auth.user(ratelimit=True)
    async def add_threepid(request: web.Request, requester: Requester) -> web.Response:
        await read_json_object(request)
        raise denied()

    @auth.user(ratelimit=True)
    async def remove_threepid(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        if not isinstance(body.get("medium"), str) or not isinstance(body.get("address"), str):
            raise MatrixError(400, "M_MISSING_PARAM", "'medium' and 'address' are required")
        return json_response({"id_server_unbind_result": "no-support"})

    add_client_route(router, "GET", "/account/3pid", get_threepids)
    for path in REQUEST_TOKEN_PATHS:
        add_client_route(router, "POST", path, request_token)
    for path in ("/account/3pid", "/account/3pid/add", "/account/3pid/bind"):
        add_client_route(router, "POST", path, add_threepid)
    for path in ("/account/3pid/delete", "/account/3pid/unbind"):
        add_client_route(router, "POST", path, remove_threepid)
