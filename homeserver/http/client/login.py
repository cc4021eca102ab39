"""Sessions: `GET/POST /login`, `POST /refresh`, `POST /logout`, `POST /logout/all`
(C-S "Login", login.yaml, refresh.yaml, logout.yaml).

Login supports `m.login.password` with an `m.id.user` identifier (or the deprecated `user`
key). A client naming an existing `device_id` takes that device over; its old tokens die.
`refresh_token: true` gets a refresh token and an access token that expires.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_bool, optional_str, required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.accounts import AccountService, check_device_id, check_display_name
from homeserver.services.auth import Requester
from homeserver.services.credentials import PasswordChecker
from homeserver.services.uia import PASSWORD

LOGIN_FLOWS: Final = {"flows": [{"type": PASSWORD}]}


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    accounts: AccountService,
    passwords: PasswordChecker,
    *,
    client_base_url: str,
) -> None:
    well_known = {"m.homeserver": {"base_url": client_base_url}}

    async def get_login(request: web.Request) -> web.Response:
        return json_response(LOGIN_FLOWS)

    async def post_login(request: web.Request) -> web.Response:
        auth.ratelimit_ip(request)
        body = await read_json_object(request)
        login_type = required_str(body, "type")
        if login_type != PASSWORD:
            raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type!r}")
        device_id = optional_str(body, "device_id")
        display_name = optional_str(body, "initial_device_display_name")
        refresh = optional_bool(body, "refresh_token", False)
        if device_id is not None:
            check_device_id(device_id)
        if display_name is not None:
            check_display_name(display_name)
        user_id = await passwords.check(body)
        session = await accounts.login(
            user_id, device_id=device_id, device_display_name=display_name, refresh=refresh
        )
        response: dict[str, Any] = session.to_json()
        response["home_server"] = accounts.server_name
        response["well_known"] = well_known
        return json_response(response)

    async def refresh(request: web.Request) -> web.Response:
        auth.ratelimit_ip(request)
        body = await read_json_object(request)
        session = await accounts.refresh(required_str(body, "refresh_token"))
        return json_response(
            {
                "access_token": session.access_token,
                "refresh_token": session.refresh_token,
                "expires_in_ms": session.expires_in_ms,
            }
        )

    @auth.user
    async def logout(request: web.Request, requester: Requester) -> web.Response:
        await accounts.logout(requester)
        return json_response({})

    @auth.user
    async def logout_all(request: web.Request, requester: Requester) -> web.Response:
        await accounts.logout_all(requester.user_id)
        return json_response({})

    add_client_route(router, "GET", "/login", get_login)
    add_client_route(router, "POST", "/login", post_login)
    add_client_route(router, "POST", "/refresh", refresh, versions=("v3",))
    add_client_route(router, "POST", "/logout", logout)
    add_client_route(router, "POST", "/logout/all", logout_all)
