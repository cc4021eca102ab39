"""S2S "Content Repository": `GET /_matrix/federation/v1/media/download/{mediaId}` and
`/thumbnail/{mediaId}`, our own media for other servers.

The answer is `multipart/mixed` with exactly two parts: a JSON metadata object (always `{}`
today) and the bytes with their Content-Type and Content-Disposition. Only media whose
`mxc://` URI names this server is served; a server never proxies a third server's media.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Final

from aiohttp import web

from homeserver.http.client.media import thumbnail_params, timeout_ms_param
from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.services.media import MediaService, ServedMedia
from homeserver.services.media_names import content_disposition

PREFIX: Final = "/_matrix/federation/v1/media"
_CHUNK: Final = 256 * 1024


def add_routes(router: web.UrlDispatcher, auth: FederationAuth, media: MediaService) -> None:
    @auth
    async def download(request: web.Request, fed: FederationRequest) -> web.StreamResponse:
        served = await media.local_download(
            request.match_info["mediaId"], timeout_ms_param(request)
        )
        return await send_multipart(request, served)

    @auth
    async def thumbnail(request: web.Request, fed: FederationRequest) -> web.StreamResponse:
        width, height, method = thumbnail_params(request)
        served = await media.thumbnail(
            media.server_name,
            request.match_info["mediaId"],
            width,
            height,
            method,
            timeout_ms_param(request),
        )
        return await send_multipart(request, served)

    router.add_get(PREFIX + "/download/{mediaId}", download)
    router.add_get(PREFIX + "/thumbnail/{mediaId}", thumbnail)


def multipart_frame(boundary: str, served: ServedMedia) -> tuple[bytes, bytes]:
    """What goes before the media bytes (the metadata part and the media part's headers) and
    what goes after them (the closing delimiter), per RFC 2046 section 5.1."""
    disposition = content_disposition(served.content_type, served.filename)
    head = (
        f"--{boundary}\r\n"
        "Content-Type: application/json\r\n\r\n"
        "{}\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: {served.content_type}\r\n"
        f"Content-Disposition: {disposition}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail


async def send_multipart(request: web.Request, served: ServedMedia) -> web.StreamResponse:
    """Stream the two-part answer, reading the file in chunks (never wholly in memory)."""
    boundary = secrets.token_hex(16)  # random: cannot occur in the content by accident
    head, tail = multipart_frame(boundary, served)
    response = web.StreamResponse(
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )
    response.content_length = len(head) + served.length + len(tail)
    await response.prepare(request)
    await response.write(head)
    with served.path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            await response.write(chunk)
    await response.write(tail)
    await response.write_eof()
    return response
