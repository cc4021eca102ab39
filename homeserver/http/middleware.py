"""Request middlewares: access log, CORS for the client API, request body size limit.

Order (outermost first): access log → CORS → errors (homeserver/errors.py) → body limit, so
the log sees the final status, and error responses carry CORS headers too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from homeserver.errors import MatrixError

access_logger = logging.getLogger("homeserver.access")


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """CONTRACT "Request limits": `limits.max_request_body`, `limits.max_json_depth`."""

    max_request_body: int
    max_json_depth: int


REQUEST_LIMITS: Final = web.AppKey("request_limits", RequestLimits)

# Query parameters whose values never reach the log (C-S "Using access tokens").
_SECRET_QUERY_PARAMETERS: Final = frozenset({"access_token", "login_token", "loginToken"})

# Paths of the Server-Server API; everything else on a client listener is client-facing.
_FEDERATION_PREFIXES: Final = ("/_matrix/federation/", "/_matrix/key/")

# C-S "Web Browser Clients": the recommended headers, on every response and on pre-flights.
CORS_HEADERS: Final = CIMultiDict(
    {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
    }
)


def loggable_path(request: web.BaseRequest) -> str:
    """The path and query, with secret query parameter values replaced by `<redacted>`."""
    query = request.rel_url.query
    if not query:
        return request.path
    if not _SECRET_QUERY_PARAMETERS.intersection(query.keys()):
        return request.path_qs
    redacted = request.rel_url.with_query(
        [(k, "<redacted>" if k in _SECRET_QUERY_PARAMETERS else v) for k, v in query.items()]
    )
    return redacted.path_qs


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per request: method, path without secrets, status, duration (CONTRACT "Logs")."""
    started = time.perf_counter()
    status: int | str = "-"  # the client went away before an answer existed
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        access_logger.info(
            "%s %s %s %s %.1fms",
            request.remote,
            request.method,
            loggable_path(request),
            status,
            (time.perf_counter() - started) * 1000,
        )


def is_client_path(path: str) -> bool:
    return not path.startswith(_FEDERATION_PREFIXES)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS on client paths. An OPTIONS request gets the headers and nothing else: the spec
    says the server MUST NOT perform the endpoint's logic for it."""
    if not is_client_path(request.path):
        return await handler(request)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    response = await handler(request)
    response.headers.extend(CORS_HEADERS)
    return response


def body_limit_for(request: web.Request) -> int:
    """The largest body the matched endpoint accepts.

    A handler (function or callable object) may carry a `max_body_size` attribute, e.g. the
    media upload endpoint with `media.max_upload_size`; every other endpoint gets
    `limits.max_request_body`.
    """
    override = getattr(request.match_info.handler, "max_body_size", None)
    if isinstance(override, int):
        return override
    return request.app[REQUEST_LIMITS].max_request_body


def too_large() -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", "Request body too large")


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a declared Content-Length over the limit before reading any of the body.

    Chunked bodies have no declared length; `read_json_object` (and streaming handlers) stop
    reading as soon as they pass the limit.
    """
    length = request.content_length
    if length is not None and length > body_limit_for(request):
        raise too_large()
    return await handler(request)

