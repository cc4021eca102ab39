"""The content-addressed file store (homeserver/services/media_files.py) on its own."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.services.media_files import STALE_TMP_AGE_S, ContentTooLarge, MediaFiles


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_content_is_stored_under_its_sha256_once(tmp_path: Path) -> None:
    files = MediaFiles(tmp_path)
    files.ensure_directories()
    first = await files.write_stream(pieces(b"ab", b"cd"), limit=10)
    second = await files.write_bytes(b"abcd")
    assert first == second and first.length == 4
    assert first.sha256 == hashlib.sha256(b"abcd").hexdigest()
    assert files.path_for(first.sha256).read_bytes() == b"abcd"
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_too_much_content_leaves_nothing_behind(tmp_path: Path) -> None:
    files = MediaFiles(tmp_path)
    files.ensure_directories()
    with pytest.raises(ContentTooLarge):
        await files.write_stream(pieces(b"12345", b"67890"), limit=8)
    assert files_under(tmp_path) == []


def test_paths_come_only_from_hex_digests(tmp_path: Path) -> None:
    files = MediaFiles(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(ValueError):
            files.path_for(bad)


def test_stale_temporary_files_are_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    stale, fresh = tmp_path / "tmp" / "upload-old", tmp_path / "tmp" / "upload-new"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    old = time.time() - STALE_TMP_AGE_S - 60
    os.utime(stale, (old, old))
    MediaFiles(tmp_path).ensure_directories()
    assert not stale.exists() and fresh.exists()
