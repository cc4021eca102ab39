"""Account management: `GET /account/whoami`, `POST /account/password`,
`POST /account/deactivate` (C-S "Account management", whoami.yaml,
password_management.yaml, account_deactivation.yaml).

Password change and deactivation use User-Interactive Authentication with the user's password
(`m.login.password`). An access token is optional there (the spec allows both); without one,
the password stage alone says whose account it is.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_bool, required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.accounts import AccountService, check_password_length
from homeserver.services.auth import Requester
from homeserver.services.uia import PASSWORD_FLOWS, Flow, UserInteractiveAuth


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    accounts: AccountService,
    uia: UserInteractiveAuth,
) -> None:
    @auth.user
    async def whoami(request: web.Request, requester: Requester) -> web.Response:
        body: dict[str, Any] = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            body["device_id"] = requester.device_id
        return json_response(body)

    async def authenticate(
        request: web.Request, body: dict[str, Any], operation: str, requester: Requester | None
    ) -> str:
        """Run UIA for `operation`; the user whose account it acts on.

        Rate limited (per user, or per address without a token): each attempt may be a
        password guess.
        """
        if requester is None:
            auth.ratelimit_ip(request)
        else:
            auth.ratelimit_user(requester)
        flows: tuple[Flow, ...] = PASSWORD_FLOWS
        if requester is not None:
            flows = await uia.flows_for_user(requester.user_id)
        user_id = await uia.authenticate(
            body,
            operation=operation,
            flows=flows,
            user_id=None if requester is None else requester.user_id,
        )
        if user_id is None:  # unreachable: password flows always identify the user
            raise MatrixError(403, "M_FORBIDDEN", "Could not identify the account")
        return user_id

    @auth.optional
    async def change_password(request: web.Request, requester: Requester | None) -> web.Response:
        body = await read_json_object(request)
        new_password = required_str(body, "new_password")
        check_password_length(new_password)
        # "Whether the user's other access tokens, and their associated devices, should be
        # revoked if the request succeeds. Defaults to true."
        logout_devices = optional_bool(body, "logout_devices", True)
        user_id = await authenticate(request, body, "change_password", requester)
        await accounts.change_password(
            user_id,
            new_password,
            logout_devices=logout_devices,
            keep_device=None if requester is None else requester.device_id,
        )
        return json_response({})

    @auth.optional
    async def deactivate(request: web.Request, requester: Requester | None) -> web.Response:
        body = await read_json_object(request)
        optional_bool(body, "erase", False)  # validated; nothing beyond the account to erase yet
        user_id = await authenticate(request, body, "deactivate", requester)
        await accounts.deactivate(user_id)
        # No third-party identifiers are ever bound here, so there is nothing to unbind.
        return json_response({"id_server_unbind_result": "success"})

    add_client_route(router, "GET", "/account/whoami", whoami)
    add_client_route(router, "POST", "/account/password", change_password)
    add_client_route(router, "POST", "/account/deactivate", deactivate)
