"""Who is calling: access-token authentication and rate limits for Client-Server handlers.

Every client handler module gets a `ClientAuth` in its `add_routes` (homeserver/app.py wires
it) and wraps its handlers; a wrapped handler receives the `Requester` as a second argument:

    from homeserver.http.client.auth_helpers import ClientAuth
    from homeserver.http.client.routing import add_client_route
    from homeserver.services.auth import Requester

    def add_routes(router: web.UrlDispatcher, auth: ClientAuth, rooms: RoomService) -> None:
        @auth.user                       # no/bad token: 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN
        async def joined_rooms(request: web.Request, requester: Requester) -> web.Response:
            return json_response({"joined_rooms": await rooms.joined(requester.user_id)})

        @auth.user(ratelimit=True)       # also 429 M_LIMIT_EXCEEDED per user (rate_limits)
        async def send(request: web.Request, requester: Requester) -> web.Response: ...

        @auth.optional                   # requester is None when no token was sent
        async def public_rooms(request: web.Request, requester: Requester | None) -> ...: ...

        add_client_route(router, "GET", "/joined_rooms", joined_rooms)   # v3 (and r0) paths

Without the decorators: `await auth.requester(request)` (401 without a token) and
`await auth.optional_requester(request)`; both cache the answer on the request, so calling
them again in the same request costs nothing. Unauthenticated endpoints that should be limited
per client address (login, register) call `auth.ratelimit_ip(request)`.

`Requester` (homeserver/services/auth.py) carries `user_id`, `device_id`, `is_admin`,
`is_guest` and `access_token_id`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final, overload

from aiohttp import web

from homeserver.http.client.guest_access import check_guest_allowed
from homeserver.services.auth import Authenticator, Requester, extract_access_token
from homeserver.services.ratelimit import RateLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UserHandler = Callable[[web.Request, Requester], Awaitable[web.StreamResponse]]
OptionalUserHandler = Callable[[web.Request, Requester | None], Awaitable[web.StreamResponse]]

# Where the authenticated requester of a request is kept once known.
_REQUESTER_KEY: Final = web.RequestKey("requester", Requester)


class ClientAuth:
    def __init__(self, authenticator: Authenticator, ratelimiter: RateLimiter) -> None:
        self.authenticator = authenticator
        self.ratelimiter = ratelimiter

    async def requester(self, request: web.Request) -> Requester:
        """The authenticated user of `request`; 401 `M_MISSING_TOKEN`/`M_UNKNOWN_TOKEN`."""
        known: Requester | None = request.get(_REQUESTER_KEY)
        if known is not None:
            return known
        token = extract_access_token(request.headers, request.query)
        requester = await self.authenticator.authenticate(token, ip=request.remote)
        request[_REQUESTER_KEY] = requester
        return requester

    async def optional_requester(self, request: web.Request) -> Requester | None:
        """The authenticated user, or None if the request carries no token at all.

        A token that is sent but invalid is still an error: the client believes it is
        logged in and must learn otherwise.
        """
        if "Authorization" not in request.headers and "access_token" not in request.query:
            return None
        return await self.requester(request)

    def ratelimit_user(self, requester: Requester) -> None:
        """429 `M_LIMIT_EXCEEDED` if this user has been too busy."""
        self.ratelimiter.check_user(requester.user_id)

    def ratelimit_ip(self, request: web.Request) -> None:
        """429 `M_LIMIT_EXCEEDED` if this client address has been too busy."""
        self.ratelimiter.check_ip(request.remote)

    @overload
    def user(self, handler: UserHandler, /) -> Handler: ...

    @overload
    def user(
        self, handler: None = None, /, *, ratelimit: bool = False
    ) -> Callable[[UserHandler], Handler]: ...

    def user(
        self, handler: UserHandler | None = None, /, *, ratelimit: bool = False
    ) -> Handler | Callable[[UserHandler], Handler]:
        """Decorator: the handler runs only for an authenticated user, who is passed in."""

        def decorate(inner: UserHandler) -> Handler:
            @functools.wraps(inner)
            async def wrapper(request: web.Request) -> web.StreamResponse:
                requester = await self.requester(request)
                if requester.is_guest:
                    check_guest_allowed(request)  # C-S "Guest Access"
                if ratelimit:
                    self.ratelimit_user(requester)
                return await inner(request, requester)

            return wrapper

        return decorate if handler is None else decorate(handler)

    def optional(self, handler: OptionalUserHandler) -> Handler:
        """Decorator: authentication is optional; the handler gets None without a token."""

        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            return await handler(request, await self.optional_requester(request))

        return wrapper
