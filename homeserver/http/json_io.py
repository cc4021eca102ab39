"""JSON request bodies and responses (orjson: fast, strict about UTF-8, NaN and Infinity)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.middleware import REQUEST_LIMITS, body_limit_for, too_large


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


async def read_body_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 M_TOO_LARGE as soon as more than `limit` bytes have arrived."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large()
    chunks: list[bytes] = []
    received = 0
    while chunk := await request.content.readany():
        received += len(chunk)
        if received > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or 400 M_NOT_JSON.

    Refused: bodies that do not parse (including invalid UTF-8, lone surrogates, NaN), bodies
    that are not an object, and nesting deeper than `limits.max_json_depth` (CONTRACT "Request
    limits"). Too large: 413 M_TOO_LARGE, without reading the rest.
    """
    body = await read_body_limited(request, body_limit_for(request))
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON.") from None
    if not isinstance(value, dict):
        raise MatrixError(400, "M_NOT_JSON", "Content must be a JSON object.")
    max_depth = request.app[REQUEST_LIMITS].max_json_depth
    if _deeper_than(body, value, max_depth):
        raise MatrixError(400, "M_NOT_JSON", f"JSON nested deeper than {max_depth} levels.")
    return value


def _deeper_than(raw: bytes, value: dict[str, Any], max_depth: int) -> bool:
    """True if containers nest more than `max_depth` levels (`{}` is one level)."""
    # Nesting needs at least as many brackets as levels: most bodies skip the walk entirely.
    if raw.count(b"{") + raw.count(b"[") <= max_depth:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            return True
        children = container.values() if isinstance(container, dict) else container
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
