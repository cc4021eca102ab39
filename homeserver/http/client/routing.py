"""Client-Server API paths: one route per endpoint under `/_matrix/client/v3` and, for clients
that still use it, the older `/_matrix/client/r0` prefix (same behaviour)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from aiohttp import web

CLIENT_PREFIX: Final = "/_matrix/client"
DEFAULT_VERSIONS: Final = ("v3", "r0")


def add_client_route(
    router: web.UrlDispatcher,
    method: str,
    path: str,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    *,
    versions: Sequence[str] = DEFAULT_VERSIONS,
) -> None:
    """Route `METHOD /_matrix/client/{version}{path}` to `handler` for each of `versions`."""
    for version in versions:
        router.add_route(method, f"{CLIENT_PREFIX}/{version}{path}", handler)
