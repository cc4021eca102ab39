"""Building the content repository from the config: `media.store_path` (default
`<data_dir>/media`), `media.max_upload_size`, and the federation client for other servers'
media when federation is enabled."""

from __future__ import annotations

import asyncpg

from homeserver.config import Config
from homeserver.services.media import MediaService
from homeserver.services.media_files import MediaFiles
from homeserver.services.media_remote import MediaRequester, RemoteMediaFetcher
from homeserver.storage.media import MediaStore


def build_media_service(
    config: Config, pool: asyncpg.Pool, requester: MediaRequester | None
) -> MediaService:
    files = MediaFiles(config.media.store_path or config.data_dir / "media")
    files.ensure_directories()
    max_size = config.media.max_upload_size
    return MediaService(
        store=MediaStore(pool),
        files=files,
        server_name=config.server_name,
        max_upload_size=max_size,
        remote=None if requester is None else RemoteMediaFetcher(requester, files, max_size),
    )
