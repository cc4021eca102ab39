"""Account registration: `POST /register` and `GET /register/available`
(C-S "Account registration", registration.yaml).

Open registration (`registration.enabled`) uses User-Interactive Authentication with the single
flow `m.login.dummy`. Username checks (`M_INVALID_USERNAME`, `M_USER_IN_USE`) come before the
UIA exchange, as the spec requires; `M_USER_IN_USE` can still come after it when someone else
took the name meanwhile. `kind=guest` (C-S "Guest Access") creates a guest account with a
generated user ID and logs it in, without UIA; it is offered when registration is enabled.
A guest upgrades to a full account keeping its user ID through the ordinary flow, adding
`guest_access_token` and giving its own localpart as `username`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_bool, optional_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.accounts import (
    AccountService,
    check_device_id,
    check_display_name,
    check_password_length,
)
from homeserver.services.uia import DUMMY_FLOWS, UserInteractiveAuth


def registration_disabled() -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", "Registration is disabled")


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    accounts: AccountService,
    uia: UserInteractiveAuth,
    *,
    registration_enabled: bool,
) -> None:
    async def register(request: web.Request) -> web.Response:
        auth.ratelimit_ip(request)
        kind = request.query.get("kind", "user")
        if kind not in ("user", "guest"):
            raise MatrixError(400, "M_INVALID_PARAM", "kind must be 'user' or 'guest'")
        if not registration_enabled:
            if kind == "guest":
                raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not enabled")
            raise registration_disabled()
        body = await read_json_object(request)
        if kind == "guest":
            return await register_guest(body)
        username = optional_str(body, "username")
        password = optional_str(body, "password")
        device_id = optional_str(body, "device_id")
        display_name = optional_str(body, "initial_device_display_name")
        inhibit_login = optional_bool(body, "inhibit_login", False)
        refresh = optional_bool(body, "refresh_token", False)
        if password is not None:
            check_password_length(password)
        if device_id is not None:
            check_device_id(device_id)
        if display_name is not None:
            check_display_name(display_name)
        guest_access_token = optional_str(body, "guest_access_token")
        user_id: str | None = None
        if guest_access_token is not None:
            # C-S "Guest Access": upgrading keeps the guest's user ID (checked before UIA).
            user_id = await accounts.check_guest_upgrade(guest_access_token, username)
        elif username is not None:
            user_id = await accounts.check_available(username)

        await uia.authenticate(body, operation="register", flows=DUMMY_FLOWS, user_id=None)

        if guest_access_token is not None and user_id is not None:
            session = await accounts.upgrade_guest(
                user_id,
                password,
                login=not inhibit_login,
                device_id=device_id,
                device_display_name=display_name,
                refresh=refresh,
            )
        else:
            user_id, session = await accounts.register(
                user_id,
                password,
                login=not inhibit_login,
                device_id=device_id,
                device_display_name=display_name,
                refresh=refresh,
            )
        response: dict[str, Any] = {"user_id": user_id, "home_server": accounts.server_name}
        if session is not None:
            response.update(session.to_json())
        return json_response(response)

    async def register_guest(body: dict[str, Any]) -> web.Response:
        """registration.yaml: for guests the server ignores every parameter except
        `initial_device_display_name`."""
        display_name = optional_str(body, "initial_device_display_name")
        if display_name is not None:
            check_display_name(display_name)
        user_id, session = await accounts.register(
            None, None, device_display_name=display_name, guest=True
        )
        assert session is not None
        response: dict[str, Any] = {"user_id": user_id, "home_server": accounts.server_name}
        response.update(session.to_json())
        return json_response(response)

    async def available(request: web.Request) -> web.Response:
        auth.ratelimit_ip(request)
        if not registration_enabled:
            raise registration_disabled()
        username = request.query.get("username")
        if username is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'username' query parameter")
        await accounts.check_available(username)
        return json_response({"available": True})

    add_client_route(router, "POST", "/register", register)
    add_client_route(router, "GET", "/register/available", available)
