"""Media bytes on disk, content-addressed: one file per distinct content, named by its SHA-256.

Layout under `media.store_path`: `content/ab/cd/abcd…` for finished files, `tmp/` for files
still arriving. A file is written to `tmp/`, flushed to disk (CONTRACT "Durability": an
acknowledged upload survives a crash), then renamed into place, so a reader never sees a partial
file. Identical uploads share one file. Paths come only from hex digests, never from anything a
client or a remote server sent (C-S "Security considerations": no directory traversal).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# A file still in tmp/ after a day belongs to no upload in progress (uploads take minutes).
STALE_TMP_AGE_S: Final = 24 * 60 * 60
_TMP_PREFIX: Final = "upload-"


class ContentTooLarge(Exception):
    """More bytes arrived than the limit allows."""


@dataclass(frozen=True, slots=True)
class FileDigest:
    sha256: str  # lowercase hex
    length: int


class MediaFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._content = root / "content"
        self._tmp = root / "tmp"

    def ensure_directories(self) -> None:
        """Create the layout, and remove files a crash left half-written long ago."""
        self._content.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - STALE_TMP_AGE_S
        for leftover in self._tmp.glob(_TMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self._content / sha256[:2] / sha256[2:4] / sha256

    async def write_stream(self, chunks: AsyncIterable[bytes], limit: int) -> FileDigest:
        """Store everything `chunks` yields; `ContentTooLarge` as soon as it passes `limit`."""
        pending = _PendingFile(self._tmp)
        try:
            async for chunk in chunks:
                pending.add(chunk)
                if pending.length > limit:
                    raise ContentTooLarge(f"more than {limit} bytes")
            return await pending.commit(self)
        finally:
            pending.discard()

    async def write_bytes(self, data: bytes) -> FileDigest:
        pending = _PendingFile(self._tmp)
        try:
            pending.add(data)
            return await pending.commit(self)
        finally:
            pending.discard()

    async def read_bytes(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)


class _PendingFile:
    """A temporary file being filled, hashed as it goes."""

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=_TMP_PREFIX)
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._hash = hashlib.sha256()
        self.length = 0
        self._committed = False

    def add(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.length += len(chunk)

    async def commit(self, files: MediaFiles) -> FileDigest:
        digest = FileDigest(self._hash.hexdigest(), self.length)
        target = files.path_for(digest.sha256)
        await asyncio.to_thread(self._flush_and_move, target)
        self._committed = True
        return digest

    def _flush_and_move(self, target: Path) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if target.is_file():
            # The same content is already stored: the new copy is redundant.
            self._path.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash too
        finally:
            os.close(directory)

    def discard(self) -> None:
        """Remove the temporary file unless it was committed."""
        if self._committed:
            return
        if not self._file.closed:
            self._file.close()
        self._path.unlink(missing_ok=True)
