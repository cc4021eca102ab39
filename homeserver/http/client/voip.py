"""GET /voip/turnServer (C-S "Voice over IP", `voip.yaml`).

Credentials follow the TURN REST API convention that coturn's `use-auth-secret` implements:
the username is `<expiry, Unix seconds>:<user ID>` and the password the base64 HMAC-SHA1 of
the username under the shared secret, so the TURN server checks them without asking us.
Without TURN URIs or a secret the answer is `{}`: the spec defines no error for "no TURN
server", and clients read an empty object as "none" (they fall back to STUN or none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from homeserver.config import VoipConfig
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester


def turn_credentials(config: VoipConfig, user_id: str, now_s: float) -> dict[str, Any]:
    """The `turnServer` body for `user_id`, valid for `turn_user_lifetime` from `now_s`."""
    if not config.turn_uris or not config.turn_shared_secret:
        return {}
    ttl = int(config.turn_user_lifetime.total_seconds())
    username = f"{int(now_s) + ttl}:{user_id}"
    digest = hmac.new(config.turn_shared_secret.encode(), username.encode(), hashlib.sha1)
    return {
        "username": username,
        "password": base64.b64encode(digest.digest()).decode(),
        "uris": list(config.turn_uris),
        "ttl": ttl,
    }


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    config: VoipConfig,
    clock: Callable[[], float] = time.time,
) -> None:
    @auth.user(ratelimit=True)
    async def turn_server(request: web.Request, requester: Requester) -> web.Response:
        if requester.is_guest and not config.turn_allow_guests:
            return json_response({})
        return json_response(turn_credentials(config, requester.user_id, clock()))

    add_client_route(router, "GET", "/voip/turnServer", turn_server)
