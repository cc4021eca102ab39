"""Downloading other servers' media (S2S "Content Repository").

`GET /_matrix/federation/v1/media/download/{mediaId}` first, signed like every federation
request; its answer is `multipart/mixed` with exactly two parts, a JSON object of metadata and
then the bytes. Only when the origin answers `404 M_UNRECOGNIZED` (it predates v1.11) do we fall
back to the deprecated `GET /_matrix/media/v3/download/{serverName}/{mediaId}` with
`allow_remote=false`, as the spec requires. A media part that holds a `Location` instead of
bytes is followed with a plain GET (the URL itself is never cached). The bytes are streamed to
disk with the upload size limit; nothing larger is kept (C-S "Security considerations": 502
M_TOO_LARGE).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDictProxy

from homeserver.remote.client import Query, format_path
from homeserver.remote.errors import RemoteError
from homeserver.services.media_files import ContentTooLarge, FileDigest, MediaFiles
from homeserver.services.media_names import filename_of_disposition, normalise_content_type

FEDERATION_DOWNLOAD: Final = "/_matrix/federation/v1/media/download/{}"
LEGACY_DOWNLOAD: Final = "/_matrix/media/v3/download/{}/{}"
# A large file over a slow link needs longer than a JSON request's minute.
DOWNLOAD_TIMEOUT_S: Final = 300.0
_METADATA_LIMIT: Final = 64 * 1024
_CHUNK: Final = 64 * 1024

T = TypeVar("T")

# What aiohttp's multipart reader raises on a body that breaks RFC 2046 (a missing boundary,
# a bad part header, an early end).
_MALFORMED: Final = (ValueError, AssertionError, HttpProcessingError)


class MediaRequester(Protocol):
    """What fetching needs of homeserver/remote/client.py `FederationClient`."""

    async def get_streamed(
        self,
        destination: str,
        path: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> T: ...

    async def get_url_streamed(
        self,
        url: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        timeout_s: float | None = None,
    ) -> T: ...


class BadRemoteMedia(Exception):
    """The origin's answer was not the media response the spec describes."""


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    digest: FileDigest
    content_type: str
    filename: str | None


class RemoteMediaFetcher:
    def __init__(self, requester: MediaRequester, files: MediaFiles, max_size: int) -> None:
        self._requester = requester
        self._files = files
        self._max_size = max_size

    async def fetch(self, origin: str, media_id: str, timeout_ms: int) -> FetchedMedia:
        """Download `mxc://origin/media_id` to the file store.

        Raises `RemoteError` / `RemoteUnreachable` from the client, `ContentTooLarge`, or
        `BadRemoteMedia`.
        """
        query: Query = {"timeout_ms": timeout_ms}
        try:
            return await self._requester.get_streamed(
                origin,
                format_path(FEDERATION_DOWNLOAD, media_id),
                self._read_multipart,
                query,
                timeout_s=DOWNLOAD_TIMEOUT_S,
            )
        except RemoteError as exc:
            if not (exc.status == 404 and exc.errcode == "M_UNRECOGNIZED"):
                raise
        # S2S "Content Repository": fall back, never letting the origin fetch further.
        return await self._requester.get_streamed(
            origin,
            format_path(LEGACY_DOWNLOAD, origin, media_id),
            self._read_plain,
            {**query, "allow_remote": False},
            timeout_s=DOWNLOAD_TIMEOUT_S,
        )

    async def _read_multipart(self, response: aiohttp.ClientResponse) -> FetchedMedia:
        if response.content_type != "multipart/mixed":
            raise BadRemoteMedia(f"expected multipart/mixed, got {response.content_type}")
        try:
            reader = aiohttp.MultipartReader(response.headers, response.content)
            metadata = await reader.next()
            if not isinstance(metadata, aiohttp.BodyPartReader):
                raise BadRemoteMedia("the first part is missing")
            # The metadata object is empty today; it is read (bounded) and not used.
            await _read_part_limited(metadata, _METADATA_LIMIT)
            media = await reader.next()
        except _MALFORMED as exc:
            raise BadRemoteMedia(f"malformed multipart body: {exc}") from None
        if not isinstance(media, aiohttp.BodyPartReader):
            raise BadRemoteMedia("the media part is missing")
        location = media.headers.get("Location")
        if location is not None:
            # The bytes are elsewhere (a CDN, say): fetched unsigned, same limits and policy.
            return await self._requester.get_url_streamed(
                location, self._read_plain, timeout_s=DOWNLOAD_TIMEOUT_S
            )
        try:
            digest = await self._files.write_stream(_part_chunks(media), self._max_size)
        except _MALFORMED as exc:
            raise BadRemoteMedia(f"malformed media part: {exc}") from None
        return _described(digest, media.headers)

    async def _read_plain(self, response: aiohttp.ClientResponse) -> FetchedMedia:
        if response.content_length is not None and response.content_length > self._max_size:
            raise ContentTooLarge(f"{response.content_length} bytes")
        digest = await self._files.write_stream(
            response.content.iter_chunked(_CHUNK), self._max_size
        )
        return _described(digest, response.headers)


def _described(digest: FileDigest, headers: CIMultiDictProxy[str]) -> FetchedMedia:
    return FetchedMedia(
        digest,
        normalise_content_type(headers.get("Content-Type")),
        filename_of_disposition(headers.get("Content-Disposition")),
    )


async def _part_chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk


async def _read_part_limited(part: aiohttp.BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    async for chunk in _part_chunks(part):
        data += chunk
        if len(data) > limit:
            raise BadRemoteMedia("the metadata part is too large")
    return bytes(data)
