"""Shared-secret registration, compatible with Synapse's `/_synapse/admin/v1/register`
(CONTRACT "Matrix interoperability"; Synapse docs "Shared-Secret Registration").

`GET` hands out a nonce; `POST` creates the account when `mac` is the hex HMAC-SHA1, keyed with
`registration.shared_secret`, of `nonce NUL username NUL password NUL ("admin"|"notadmin")`,
followed by `NUL user_type` when a user type is given. Each nonce works once (even for a
failed attempt) and for one minute. Errors match Synapse's statuses and messages, since tools
and test suites across the ecosystem drive this endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, Final

import asyncpg
from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.accounts import AccountService
from homeserver.services.auth import now_ms
from homeserver.storage import auth_sessions

PATH: Final = "/_synapse/admin/v1/register"
NONCE_LIFETIME_MS: Final = 60_000
# Synapse's limit on username and password length for this endpoint.
_MAX_FIELD_LENGTH: Final = 512
# Synapse's user types (`UserTypes.ALL_USER_TYPES`).
USER_TYPES: Final = frozenset({"support", "bot"})


def registration_mac(
    shared_secret: str,
    nonce: str,
    username: str,
    password: str,
    *,
    admin: bool,
    user_type: str | None = None,
) -> str:
    """The `mac` a client must send (what Synapse's register_new_matrix_user computes)."""
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type:
        parts.append(user_type)
    message = b"\x00".join(part.encode("utf-8") for part in parts)
    return hmac.new(shared_secret.encode("utf-8"), message, hashlib.sha1).hexdigest()


def _bad(message: str, errcode: str = "M_UNKNOWN") -> MatrixError:
    return MatrixError(400, errcode, message)


def _credential(body: dict[str, Any], key: str, name: str) -> str:
    """`username` or `password`: present, a string, at most 512 characters, no NUL."""
    if key not in body:
        raise _bad(f"{key} must be specified", "M_BAD_JSON")
    value = body[key]
    if not isinstance(value, str) or len(value) > _MAX_FIELD_LENGTH or "\x00" in value:
        raise _bad(f"Invalid {name}")
    return value


def add_routes(
    router: web.UrlDispatcher,
    pool: asyncpg.Pool,
    accounts: AccountService,
    shared_secret: str | None,
    *,
    clock: Callable[[], int] = now_ms,
) -> None:
    async def get_nonce(request: web.Request) -> web.Response:
        nonce = secrets.token_hex(64)
        if shared_secret is not None:  # disabled: POST refuses anyway, so store nothing
            now = clock()
            await auth_sessions.create_registration_nonce(
                pool, nonce, now_ms=now, expired_before_ms=now - NONCE_LIFETIME_MS
            )
        return json_response({"nonce": nonce})

    async def register(request: web.Request) -> web.Response:
        if shared_secret is None:
            raise _bad("Shared secret registration is not enabled")
        body = await read_json_object(request)
        if "nonce" not in body:
            raise _bad("nonce must be specified", "M_BAD_JSON")
        nonce = body["nonce"]
        if not isinstance(nonce, str) or not await auth_sessions.take_registration_nonce(
            pool, nonce, expired_before_ms=clock() - NONCE_LIFETIME_MS
        ):
            raise _bad("unrecognised nonce")
        username = _credential(body, "username", "username")
        password = _credential(body, "password", "password")
        admin = bool(body.get("admin"))
        user_type = body.get("user_type")
        if user_type is not None and user_type not in USER_TYPES:
            raise _bad("Invalid user type")
        if "mac" not in body:
            raise _bad("mac must be specified", "M_BAD_JSON")
        mac = body["mac"]
        want = registration_mac(
            shared_secret, nonce, username, password, admin=admin, user_type=user_type
        )
        if not isinstance(mac, str) or not hmac.compare_digest(
            want.encode("ascii"), mac.encode("utf-8")
        ):
            raise MatrixError(403, "M_FORBIDDEN", "HMAC incorrect")

        user_id = accounts.user_id_for(username)
        refresh = body.get("refresh_token") is True
        user_id, session = await accounts.register(user_id, password, admin=admin, refresh=refresh)
        assert session is not None
        response: dict[str, Any] = session.to_json()
        response["home_server"] = accounts.server_name
        return json_response(response)

    router.add_get(PATH, get_nonce)
    router.add_post(PATH, register)
