"""C-S "Content repository": uploads, authenticated downloads and thumbnails, the config.

Paths:
- `POST /_matrix/media/v3/upload`, `POST /_matrix/media/v1/create`,
  `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}` (uploads stay under /_matrix/media);
- `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`,
  `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`,
  `GET /_matrix/client/v1/media/config` (and the deprecated `/_matrix/media/v3/config`).

The deprecated unauthenticated `/_matrix/media/v3/download|thumbnail` endpoints are frozen
(C-S "Client behaviour", the v1.11 warning): media uploaded or cached after the freeze is
served only by the authenticated endpoints, and Veche froze them from its first release, so no
media predates the freeze and those endpoints answer 404 M_NOT_FOUND for every ID.
`/preview_url` is not offered (404 M_UNRECOGNIZED): fetching arbitrary URLs for clients is
not implemented.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth, Handler
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.media import MediaService, ServedMedia
from homeserver.services.media_names import served_headers
from homeserver.services.media_thumbnails import Method

MEDIA_PREFIX: Final = "/_matrix/media"
CLIENT_MEDIA_PREFIX: Final = "/_matrix/client/v1/media"
LEGACY_VERSIONS: Final = ("v3", "r0")
_CHUNK: Final = 64 * 1024
_MAX_DIMENSION: Final = 10_000


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, media: MediaService) -> None:
    @auth.user(ratelimit=True)
    async def upload(request: web.Request, requester: Requester) -> web.Response:
        uri = await media.upload(
            requester.user_id,
            _body_chunks(request),
            request.headers.get("Content-Type"),
            request.query.get("filename"),
        )
        return json_response({"content_uri": uri})

    @auth.user(ratelimit=True)
    async def create(request: web.Request, requester: Requester) -> web.Response:
        uri, expires = await media.create(requester.user_id)
        return json_response({"content_uri": uri, "unused_expires_at": expires})

    @auth.user(ratelimit=True)
    async def upload_to(request: web.Request, requester: Requester) -> web.Response:
        await media.upload_to(
            requester.user_id,
            request.match_info["serverName"],
            request.match_info["mediaId"],
            _body_chunks(request),
            request.headers.get("Content-Type"),
            request.query.get("filename"),
        )
        return json_response({})

    @auth.user
    async def download(request: web.Request, requester: Requester) -> web.StreamResponse:
        served = await media.download(
            request.match_info["serverName"],
            request.match_info["mediaId"],
            timeout_ms_param(request),
        )
        # The file name in the path replaces the uploaded one (GET …/{fileName}).
        filename = request.match_info.get("fileName") or served.filename
        return _file_response(served, filename)

    @auth.user
    async def thumbnail(request: web.Request, requester: Requester) -> web.StreamResponse:
        width, height, method = thumbnail_params(request)
        served = await media.thumbnail(
            request.match_info["serverName"],
            request.match_info["mediaId"],
            width,
            height,
            method,
            timeout_ms_param(request),
        )
        return _file_response(served, served.filename)

    @auth.user
    async def config(request: web.Request, requester: Requester) -> web.Response:
        return json_response({"m.upload.size": media.max_upload_size})

    async def frozen(request: web.Request) -> web.Response:
        raise MatrixError(404, "M_NOT_FOUND", "Not found: use the authenticated media endpoints")

    # The upload handlers read their body themselves, bounded by media.max_upload_size
    # (homeserver/http/middleware.py `body_limit_for`).
    _allow_body(upload, media.max_upload_size)
    _allow_body(upload_to, media.max_upload_size)

    for version in LEGACY_VERSIONS:
        base = f"{MEDIA_PREFIX}/{version}"
        router.add_post(f"{base}/upload", upload)
        router.add_put(f"{base}/upload/{{serverName}}/{{mediaId}}", upload_to)
        router.add_get(f"{base}/config", config)
        for path in (
            "download/{serverName}/{mediaId}",
            "download/{serverName}/{mediaId}/{fileName}",
            "thumbnail/{serverName}/{mediaId}",
        ):
            router.add_get(f"{base}/{path}", frozen)
    router.add_post(f"{MEDIA_PREFIX}/v1/create", create)
    router.add_get(f"{CLIENT_MEDIA_PREFIX}/download/{{serverName}}/{{mediaId}}", download)
    router.add_get(
        f"{CLIENT_MEDIA_PREFIX}/download/{{serverName}}/{{mediaId}}/{{fileName}}", download
    )
    router.add_get(f"{CLIENT_MEDIA_PREFIX}/thumbnail/{{serverName}}/{{mediaId}}", thumbnail)
    router.add_get(f"{CLIENT_MEDIA_PREFIX}/config", config)


def _allow_body(handler: Handler, limit: int) -> None:
    handler.max_body_size = limit  # type: ignore[attr-defined]


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(_CHUNK):
        yield chunk


def _file_response(served: ServedMedia, filename: str | None) -> web.FileResponse:
    return web.FileResponse(served.path, headers=served_headers(served.content_type, filename))


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{name}' must be an integer") from None


def timeout_ms_param(request: web.Request) -> int | None:
    return _int_param(request, "timeout_ms")


def thumbnail_params(request: web.Request) -> tuple[int, int, Method]:
    """`width`, `height` (required, positive) and `method` (default `scale`)."""
    return _dimension(request, "width"), _dimension(request, "height"), _method(request)


def _dimension(request: web.Request, name: str) -> int:
    value = _int_param(request, name)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"'{name}' is required")
    if not 0 < value <= _MAX_DIMENSION:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{name}' must be between 1 and 10000")
    return value


def _method(request: web.Request) -> Method:
    method = request.query.get("method", "scale")
    if method == "crop":
        return "crop"
    if method == "scale":
        return "scale"
    raise MatrixError(400, "M_INVALID_PARAM", "'method' must be 'crop' or 'scale'")
