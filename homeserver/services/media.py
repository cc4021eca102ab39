"""The content repository (C-S "Content repository", S2S "Content Repository").

Uploading (`upload`, and `create` + `upload_to` for asynchronous uploads), finding media to
serve (`download`, local or fetched once from its origin and cached), and thumbnails
(`thumbnail`). Metadata lives in Postgres (homeserver/storage/media.py), bytes on disk
(homeserver/services/media_files.py). Errors are the spec's: 404 M_NOT_FOUND, 413/502
M_TOO_LARGE, 504 M_NOT_YET_UPLOADED, 403 M_FORBIDDEN, 409 M_CANNOT_OVERWRITE_MEDIA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from homeserver.errors import MatrixError
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.services.media_files import ContentTooLarge, MediaFiles
from homeserver.services.media_names import (
    check_mxc_parts,
    essence,
    mxc_uri,
    new_media_id,
    normalise_content_type,
    sanitise_filename,
)
from homeserver.services.media_remote import BadRemoteMedia, RemoteMediaFetcher
from homeserver.services.media_thumbnails import (
    THUMBNAILABLE_TYPES,
    CannotThumbnail,
    Method,
    SourceTooLarge,
    choose_size,
    make_thumbnail,
)
from homeserver.storage.media import LocalMedia, MediaStore, StoredContent, ThumbnailKey

logger = logging.getLogger(__name__)

# C-S POST /media/v1/create: "The recommended default expiration is 24 hours".
UNUSED_EXPIRY_MS: Final = 24 * 60 * 60 * 1000
# ... and "the server should limit the number of concurrent pending media uploads".
MAX_PENDING_UPLOADS: Final = 10
# C-S `timeout_ms`: default 20 s; "The content repository SHOULD impose a maximum value".
DEFAULT_TIMEOUT_MS: Final = 20_000
MAX_TIMEOUT_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class ServedMedia:
    """Content ready to serve: its file and how to describe it."""

    path: Path
    content_type: str
    filename: str | None
    length: int


def not_found() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Media not found")


def clamp_timeout_ms(timeout_ms: int | None) -> int:
    if timeout_ms is None:
        return DEFAULT_TIMEOUT_MS
    return max(0, min(timeout_ms, MAX_TIMEOUT_MS))


class MediaService:
    def __init__(
        self,
        *,
        store: MediaStore,
        files: MediaFiles,
        server_name: str,
        max_upload_size: int,
        remote: RemoteMediaFetcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._files = files
        self.server_name = server_name
        self.max_upload_size = max_upload_size
        self._remote = remote
        self._clock = clock
        # Downloads waiting for a created ID's content, woken by its upload (one process).
        self._arrivals: dict[str, asyncio.Event] = {}
        # One fetch per remote media at a time; concurrent requests share it.
        self._fetches: dict[tuple[str, str], asyncio.Task[StoredContent]] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- Uploading ----------------------------------------------------------------------------

    async def upload(
        self,
        user_id: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        filename: str | None,
    ) -> str:
        """C-S POST /media/v3/upload: store the content under a new random ID; its mxc URI."""
        content = await self._receive(chunks, content_type, filename)
        media_id = new_media_id()
        await self._store.insert_local_media(media_id, user_id, self._now_ms(), content=content)
        return mxc_uri(self.server_name, media_id)

    async def create(self, user_id: str) -> tuple[str, int]:
        """C-S POST /media/v1/create: reserve an ID for a later upload; (mxc URI, expiry ms)."""
        now = self._now_ms()
        if await self._store.count_pending_uploads(user_id, now) >= MAX_PENDING_UPLOADS:
            raise MatrixError(
                429, "M_LIMIT_EXCEEDED", "Too many pending media uploads", retry_after_ms=60_000
            )
        media_id, expires = new_media_id(), now + UNUSED_EXPIRY_MS
        await self._store.insert_local_media(media_id, user_id, now, unused_expires_ts=expires)
        return mxc_uri(self.server_name, media_id), expires

    async def upload_to(
        self,
        user_id: str,
        server_name: str,
        media_id: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """C-S PUT /media/v3/upload/{serverName}/{mediaId}: the content of a created ID."""
        check_mxc_parts(server_name, media_id)
        if server_name != self.server_name:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown media ID")
        media = await self._store.get_local_media(media_id)
        if media is None or self._expired(media):
            raise MatrixError(404, "M_NOT_FOUND", "Unknown media ID")
        if media.user_id != user_id:
            raise MatrixError(403, "M_FORBIDDEN", "This media ID was created by another user")
        if media.content is not None:
            raise _cannot_overwrite()
        content = await self._receive(chunks, content_type, filename)
        if not await self._store.fill_created_media(media_id, content):
            raise _cannot_overwrite()
        arrival = self._arrivals.pop(media_id, None)
        if arrival is not None:
            arrival.set()

    async def _receive(
        self, chunks: AsyncIterable[bytes], content_type: str | None, filename: str | None
    ) -> StoredContent:
        name = sanitise_filename(filename)
        try:
            digest = await self._files.write_stream(chunks, self.max_upload_size)
        except ContentTooLarge:
            raise MatrixError(413, "M_TOO_LARGE", "Upload is too large") from None
        return StoredContent(
            normalise_content_type(content_type), digest.length, digest.sha256, name
        )

    def _expired(self, media: LocalMedia) -> bool:
        return (
            media.content is None
            and media.unused_expires_ts is not None
            and media.unused_expires_ts <= self._now_ms()
        )

    # -- Finding content ----------------------------------------------------------------------

    async def download(
        self, server_name: str, media_id: str, timeout_ms: int | None = None
    ) -> ServedMedia:
        """The content of `mxc://server_name/media_id`, fetched from its origin first if it is
        another server's and not cached yet."""
        content = await self._content(server_name, media_id, clamp_timeout_ms(timeout_ms))
        return self._served(content)

    async def local_download(self, media_id: str, timeout_ms: int | None = None) -> ServedMedia:
        """Our own media only (S2S: a server never proxies a third server's media)."""
        return await self.download(self.server_name, media_id, timeout_ms)

    async def _content(self, server_name: str, media_id: str, timeout_ms: int) -> StoredContent:
        check_mxc_parts(server_name, media_id)
        if server_name == self.server_name:
            return await self._local_content(media_id, timeout_ms)
        cached = await self._store.get_remote_media(server_name, media_id)
        if cached is not None:
            return cached
        return await self._fetch_remote(server_name, media_id, timeout_ms)

    async def _local_content(self, media_id: str, timeout_ms: int) -> StoredContent:
        media = await self._store.get_local_media(media_id)
        if media is None or self._expired(media):
            raise not_found()
        if media.content is not None:
            return media.content
        # Created but not uploaded yet: wait up to `timeout_ms` for the upload (C-S timeout_ms).
        arrival = self._arrivals.setdefault(media_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrival.wait(), timeout_ms / 1000)
        if not arrival.is_set() and self._arrivals.get(media_id) is arrival:
            # Nothing came: forget the event (a later waiter makes a new one) so IDs that are
            # never uploaded do not pile up here; waiters still holding it time out alone.
            del self._arrivals[media_id]
        media = await self._store.get_local_media(media_id)
        if media is None or media.content is None:
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
        return media.content

    async def _fetch_remote(self, origin: str, media_id: str, timeout_ms: int) -> StoredContent:
        if self._remote is None:
            raise not_found()  # federation is off: other servers' media cannot be had
        key = (origin, media_id)
        task = self._fetches.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_and_cache(origin, media_id, timeout_ms))
            self._fetches[key] = task
            task.add_done_callback(lambda done: self._fetch_done(key, done))
        return await asyncio.shield(task)

    def _fetch_done(self, key: tuple[str, str], task: asyncio.Task[StoredContent]) -> None:
        self._fetches.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away meanwhile

    async def _fetch_and_cache(self, origin: str, media_id: str, timeout_ms: int) -> StoredContent:
        assert self._remote is not None
        try:
            fetched = await self._remote.fetch(origin, media_id, timeout_ms)
        except RemoteError as exc:
            raise _remote_failure(exc) from None
        except ContentTooLarge:
            # C-S "Security considerations": remote media too large to proxy is 502.
            raise MatrixError(502, "M_TOO_LARGE", "Remote content is too large") from None
        except (RemoteUnreachable, BadRemoteMedia) as exc:
            logger.info("could not fetch mxc://%s/%s: %s", origin, media_id, exc)
            raise MatrixError(502, "M_UNKNOWN", "Could not fetch the remote media") from None
        content = StoredContent(
            fetched.content_type, fetched.digest.length, fetched.digest.sha256, fetched.filename
        )
        await self._store.save_remote_media(origin, media_id, self._now_ms(), content)
        return content

    def _served(self, content: StoredContent) -> ServedMedia:
        return ServedMedia(
            self._files.path_for(content.sha256),
            content.content_type,
            content.upload_name,
            content.media_length,
        )

    # -- Thumbnails ---------------------------------------------------------------------------

    async def thumbnail(
        self,
        server_name: str,
        media_id: str,
        width: int,
        height: int,
        method: Method,
        timeout_ms: int | None = None,
    ) -> ServedMedia:
        """C-S "Thumbnails": a thumbnail at least `width` x `height` (unless the original is
        smaller, then the original), generated once per recommended size and kept."""
        content = await self._content(server_name, media_id, clamp_timeout_ms(timeout_ms))
        if essence(content.content_type) not in THUMBNAILABLE_TYPES:
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for this content")
        box = choose_size(method, width, height)
        if box is None:
            return self._served_thumbnail(content)
        key = ThumbnailKey(server_name, media_id, box[0], box[1], method)
        known = await self._store.get_thumbnail(key)
        if known is None:
            local = server_name == self.server_name
            known = await self._generate(key, method, content, local=local)
            await self._store.save_thumbnail(key, known)
        return self._served_thumbnail(known)

    async def _generate(
        self, key: ThumbnailKey, method: Method, original: StoredContent, *, local: bool
    ) -> StoredContent:
        data = await self._files.read_bytes(original.sha256)
        box = (key.width, key.height)
        try:
            made = await asyncio.to_thread(make_thumbnail, data, box, method)
        except SourceTooLarge:
            # C-S: 413 for our own content, 502 for a remote server's.
            status = 413 if local else 502
            raise MatrixError(status, "M_TOO_LARGE", "Content is too large to thumbnail") from None
        except CannotThumbnail:
            raise MatrixError(
                400, "M_UNKNOWN", "Cannot generate thumbnails for this content"
            ) from None
        if made is None:  # already within the box: the original is the thumbnail
            return StoredContent(
                original.content_type, original.media_length, original.sha256, None
            )
        digest = await self._files.write_bytes(made.data)
        return StoredContent(made.content_type, digest.length, digest.sha256, None)

    def _served_thumbnail(self, content: StoredContent) -> ServedMedia:
        extension = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}.get(
            essence(content.content_type), "webp"
        )
        return ServedMedia(
            self._files.path_for(content.sha256),
            content.content_type,
            f"thumbnail.{extension}",
            content.media_length,
        )


def _cannot_overwrite() -> MatrixError:
    return MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")


def _remote_failure(exc: RemoteError) -> MatrixError:
    if exc.status == 404:
        return not_found()
    if exc.status == 504 and exc.errcode == "M_NOT_YET_UPLOADED":
        return MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
    if exc.errcode == "M_TOO_LARGE":
        return MatrixError(502, "M_TOO_LARGE", "Remote content is too large")
    logger.info("remote media request failed: %s", exc)
    return MatrixError(502, "M_UNKNOWN", "Could not fetch the remote media")
