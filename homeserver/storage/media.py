"""The content repository's metadata (schema/0011_media.sql): local media, the cache of other
servers' media, and generated thumbnails. The bytes themselves are files named by their SHA-256
(homeserver/services/media_files.py); rows here point at them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class StoredContent:
    """Where a piece of content's bytes are and how to describe them."""

    content_type: str
    media_length: int
    sha256: str
    upload_name: str | None


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """A row of `local_media`: `content` is None while a created ID waits for its upload."""

    media_id: str
    user_id: str
    created_ts: int
    unused_expires_ts: int | None
    content: StoredContent | None


@dataclass(frozen=True, slots=True)
class ThumbnailKey:
    """One thumbnail of one piece of media, at one of the recommended sizes."""

    origin: str
    media_id: str
    width: int
    height: int
    method: str


class MediaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        row = await self._pool.fetchrow(
            """
            SELECT media_id, user_id, created_ts, unused_expires_ts, upload_name, content_type,
                   media_length, sha256
            FROM local_media WHERE media_id = $1
            """,
            media_id,
        )
        if row is None:
            return None
        content = None
        if row["sha256"] is not None:
            content = StoredContent(
                row["content_type"], row["media_length"], row["sha256"], row["upload_name"]
            )
        return LocalMedia(
            row["media_id"], row["user_id"], row["created_ts"], row["unused_expires_ts"], content
        )

    async def insert_local_media(
        self,
        media_id: str,
        user_id: str,
        created_ts: int,
        *,
        content: StoredContent | None = None,
        unused_expires_ts: int | None = None,
    ) -> None:
        """A direct upload (with `content`) or a created ID waiting for one (without)."""
        await self._pool.execute(
            """
            INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_ts,
                                     upload_name, content_type, media_length, sha256)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            media_id,
            user_id,
            created_ts,
            unused_expires_ts,
            content.upload_name if content else None,
            content.content_type if content else None,
            content.media_length if content else None,
            content.sha256 if content else None,
        )

    async def fill_created_media(self, media_id: str, content: StoredContent) -> bool:
        """Attach content to a created ID; False if it already had some (a racing upload)."""
        status = await self._pool.execute(
            """
            UPDATE local_media
            SET upload_name = $2, content_type = $3, media_length = $4, sha256 = $5
            WHERE media_id = $1 AND sha256 IS NULL
            """,
            media_id,
            content.upload_name,
            content.content_type,
            content.media_length,
            content.sha256,
        )
        return bool(status == "UPDATE 1")

    async def count_pending_uploads(self, user_id: str, now_ts: int) -> int:
        """Created IDs of `user_id` that have neither content nor expired (C-S POST /create)."""
        count = await self._pool.fetchval(
            """
            SELECT count(*) FROM local_media
            WHERE user_id = $1 AND sha256 IS NULL AND unused_expires_ts > $2
            """,
            user_id,
            now_ts,
        )
        return int(count)

    async def get_remote_media(self, origin: str, media_id: str) -> StoredContent | None:
        row = await self._pool.fetchrow(
            """
            SELECT content_type, media_length, sha256, upload_name
            FROM remote_media_cache WHERE origin = $1 AND media_id = $2
            """,
            origin,
            media_id,
        )
        if row is None:
            return None
        return StoredContent(
            row["content_type"], row["media_length"], row["sha256"], row["upload_name"]
        )

    async def save_remote_media(
        self, origin: str, media_id: str, cached_ts: int, content: StoredContent
    ) -> None:
        await self._pool.execute(
            """
            INSERT INTO remote_media_cache (origin, media_id, cached_ts, upload_name,
                                            content_type, media_length, sha256)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (origin, media_id) DO NOTHING
            """,
            origin,
            media_id,
            cached_ts,
            content.upload_name,
            content.content_type,
            content.media_length,
            content.sha256,
        )

    async def get_thumbnail(self, key: ThumbnailKey) -> StoredContent | None:
        row = await self._pool.fetchrow(
            """
            SELECT content_type, media_length, sha256 FROM media_thumbnails
            WHERE origin = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5
            """,
            key.origin,
            key.media_id,
            key.width,
            key.height,
            key.method,
        )
        if row is None:
            return None
        return StoredContent(row["content_type"], row["media_length"], row["sha256"], None)

    async def save_thumbnail(self, key: ThumbnailKey, content: StoredContent) -> None:
        await self._pool.execute(
            """
            INSERT INTO media_thumbnails (origin, media_id, width, height, method,
                                          content_type, media_length, sha256)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT DO NOTHING
            """,
            key.origin,
            key.media_id,
            key.width,
            key.height,
            key.method,
            content.content_type,
            content.media_length,
            content.sha256,
        )
