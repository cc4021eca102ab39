"""Matrix errors and the middleware that turns every failure into a standard error response.

C-S "Standard error response": `{"errcode": "...", "error": "..."}` plus any keys an error code
defines (`retry_after_ms`, `soft_logout`, ...). Unexpected exceptions are logged with their
traceback and answered with a generic 500; nothing internal reaches the client (CONTRACT "Logs").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from homeserver.storage.database import is_database_unavailable

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying while PostgreSQL is unreachable.
DATABASE_RETRY_AFTER_S: Final = 5


class MatrixError(Exception):
    """An error the client should see: HTTP status, Matrix errcode, human-readable message."""

    def __init__(
        self,
        status: int,
        errcode: str,
        error: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.headers = dict(headers or {})
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}

    def to_response(self) -> web.Response:
        return error_response(self.status, self.to_json(), self.headers)


def error_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
    if status == 413:
        # The rest of the body is not read: this connection cannot carry another request.
        response.force_close()
    return response


def database_unavailable_response() -> web.Response:
    # CONTRACT "Durability and faults": 503, this exact body, and Retry-After.
    return error_response(
        503,
        {"errcode": "M_UNKNOWN", "error": "database unavailable"},
        {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def internal_error_response() -> web.Response:
    return error_response(500, {"errcode": "M_UNKNOWN", "error": "Internal server error"})


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (routing, body size) as Matrix errors."""
    if exc.status == 404:
        # C-S "API Standards": an unknown endpoint is 404 M_UNRECOGNIZED.
        return error_response(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
    if exc.status == 405:
        # ... and a known endpoint with the wrong method is 405 M_UNRECOGNIZED.
        allow = exc.headers.get("Allow")
        return error_response(
            405,
            {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request method"},
            {"Allow": allow} if allow else None,
        )
    if exc.status == 413:
        return error_response(413, {"errcode": "M_TOO_LARGE", "error": "Request body too large"})
    return error_response(exc.status, {"errcode": "M_UNKNOWN", "error": exc.reason})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MatrixError as exc:
        return exc.to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are responses, not errors
        return _from_http_exception(exc)
    except asyncio.CancelledError:
        raise  # the client went away, or shutdown: nothing to answer
    except Exception as exc:
        if is_database_unavailable(exc):
            logger.warning(
                "database unavailable during %s %s: %s: %s",
                request.method,
                request.path,
                type(exc).__name__,
                exc,
            )
            return database_unavailable_response()
        logger.exception("unexpected error in %s %s", request.method, request.path)
        return internal_error_response()
