"""X-Matrix authentication of inbound federation requests, and the origin it establishes.

S2S "Request Authentication": every request but those under `/_matrix/key/` and
`/_matrix/federation/v1/version` carries `Authorization: X-Matrix origin=…,destination=…,key=…,
sig=…`, a signature over the method, request target, origin, destination and JSON body. A
missing or malformed header, a destination that is not us, an unknown key or a bad signature is
401 M_UNAUTHORIZED. Servers refused by `federation.allowed_servers` / `denied_servers` are
403 M_FORBIDDEN, before any key of theirs is fetched.

Handlers wrapped with `FederationAuth.__call__` receive the verified origin and the parsed body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from federation.signing import SignatureError
from federation.xmatrix import XMatrixError, parse_authorization_header
from homeserver.errors import MatrixError
from homeserver.http.json_io import read_json_object
from homeserver.remote.keyring import KeyUnavailableError
from homeserver.remote.policy import ServerPolicy

logger = logging.getLogger(__name__)


class RequestVerifier(Protocol):
    """What authentication needs of the keyring (homeserver/remote/keyring.py `Keyring`)."""

    async def verify_request(
        self, authorization: str | None, method: str, uri: str, content: Any | None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class FederationRequest:
    """An authenticated request: who sent it and its JSON body (None without a body)."""

    origin: str
    content: dict[str, Any] | None

    def body(self) -> dict[str, Any]:
        """The JSON body; 400 M_NOT_JSON when the request had none."""
        if self.content is None:
            raise MatrixError(400, "M_NOT_JSON", "Request body must be a JSON object.")
        return self.content


FederationHandler = Callable[[web.Request, FederationRequest], Awaitable[web.StreamResponse]]
OriginHook = Callable[[str], None]


def unauthorized(reason: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", reason)


class FederationAuth:
    """Verifies X-Matrix on each request. `on_origin_seen(origin)` runs after every
    successfully authenticated request (the outbound sender resets that peer's backoff)."""

    def __init__(
        self,
        verifier: RequestVerifier,
        policy: ServerPolicy,
        *,
        on_origin_seen: OriginHook | None = None,
    ) -> None:
        self._verifier = verifier
        self._policy = policy
        self._hooks: list[OriginHook] = [on_origin_seen] if on_origin_seen else []

    def add_origin_hook(self, hook: OriginHook) -> None:
        self._hooks.append(hook)

    async def authenticate(self, request: web.Request) -> FederationRequest:
        authorization = request.headers.get("Authorization")
        if not authorization:
            raise unauthorized("Missing Authorization header")
        try:
            claimed = parse_authorization_header(authorization)
        except XMatrixError as exc:
            raise unauthorized(f"Invalid X-Matrix header: {exc}") from None
        if not self._policy.allows(claimed.origin):
            # federation.allowed_servers / denied_servers: refused before any key fetch.
            raise MatrixError(403, "M_FORBIDDEN", "Federation with this server is not allowed")
        content = await _read_content(request)
        try:
            # `raw_path` is the request target exactly as sent: what the origin signed.
            origin = await self._verifier.verify_request(
                authorization, request.method, request.raw_path, content
            )
        except (XMatrixError, SignatureError, KeyUnavailableError) as exc:
            logger.info("refused federation request %s %s: %s", request.method, request.path, exc)
            raise unauthorized(f"Request signature not valid: {exc}") from None
        for hook in self._hooks:
            try:
                hook(origin)
            except Exception:
                logger.exception("origin hook failed for %s", origin)
        return FederationRequest(origin, content)

    def __call__(self, handler: FederationHandler) -> Handler:
        """Wrap a handler so that it runs only for authenticated requests."""

        async def authenticated(request: web.Request) -> web.StreamResponse:
            return await handler(request, await self.authenticate(request))

        authenticated.__name__ = getattr(handler, "__name__", "federation_handler")
        return authenticated


async def _read_content(request: web.Request) -> dict[str, Any] | None:
    """The JSON body that was signed, or None for a request without a body."""
    if not request.body_exists:
        return None
    return await read_json_object(request)
