"""S2S "Content Repository": serving our media to other servers as multipart/mixed, and
fetching theirs (the v1.11 federation endpoint, the legacy fallback, errors, the cache)."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from yarl import URL

from homeserver.errors import MatrixError
from tests.federation_api.support import World, running_world
from tests.http.test_media_thumbnails import image_bytes, size_of
from tests.remote.support import make_certificate, serve

ALICE = "@alice:veche.test"
MAX_UPLOAD = 64 * 1024


@pytest.fixture
async def world(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[World]:
    """The usual world (tests/federation_api/conftest.py) with a small upload limit."""
    media = {"max_upload_size": MAX_UPLOAD}
    async with running_world(tmp_path, migrated_db_dsn, pool, media=media) as world:
        yield world


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload_local(world: World, data: bytes, content_type: str, name: str | None) -> str:
    uri = await world.deps.media.upload(ALICE, chunks(data), content_type, name)
    return uri.rsplit("/", 1)[1]


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Parse with the standard library's MIME parser: an independent reading of RFC 2046."""
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart()
    return [
        Part(dict(part.items()), part.get_payload(decode=True) or b"")
        for part in message.iter_parts()
    ]


async def signed_get(world: World, path: str, *, sign: bool = True) -> tuple[int, str, bytes]:
    remote = world.remote
    assert remote.http is not None
    headers = {"Authorization": remote.authorization("GET", path, None)} if sign else {}
    url = URL(world.federation_url + path, encoded=True)
    async with remote.http.get(url, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


# --- serving ours ---------------------------------------------------------------------------


async def test_our_media_is_served_as_two_part_multipart(world: World) -> None:
    media_id = await upload_local(world, b"file body\r\n--x", "text/plain", "notes.txt")
    status, content_type, body = await signed_get(
        world, f"/_matrix/federation/v1/media/download/{media_id}"
    )
    assert status == 200 and content_type.startswith("multipart/mixed; boundary=")
    metadata, media = parse_multipart(content_type, body)
    assert metadata.headers["Content-Type"] == "application/json" and metadata.body == b"{}"
    assert media.headers["Content-Type"] == "text/plain"
    assert media.headers["Content-Disposition"] == 'inline; filename="notes.txt"'
    assert media.body == b"file body\r\n--x"


async def test_media_requests_must_be_signed_and_name_existing_media(world: World) -> None:
    media_id = await upload_local(world, b"x", "text/plain", None)
    status, _, _ = await signed_get(
        world, f"/_matrix/federation/v1/media/download/{media_id}", sign=False
    )
    assert status == 401
    status, _, _ = await signed_get(world, "/_matrix/federation/v1/media/download/unknownid")
    assert status == 404


async def test_thumbnails_are_served_as_multipart(world: World) -> None:
    media_id = await upload_local(world, image_bytes(640, 640), "image/png", None)
    status, content_type, body = await signed_get(
        world,
        f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=96&height=96&method=crop",
    )
    assert status == 200
    _, thumbnail = parse_multipart(content_type, body)
    assert thumbnail.headers["Content-Type"] == "image/png"
    assert size_of(thumbnail.body) == (96, 96)


# --- fetching theirs ------------------------------------------------------------------------


@dataclass
class MediaOrigin:
    """A remote server's media endpoints, with what it was asked."""

    files: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    # Media IDs answered with a `Location` part pointing at /cdn/{mediaId} instead of bytes.
    redirected: set[str] = field(default_factory=set)
    # Media IDs answered with this raw body as multipart/mixed (malformed on purpose).
    broken: dict[str, bytes] = field(default_factory=dict)
    federation_endpoint: bool = True
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_matrix/federation/v1/media/download/{mediaId}", self._federation)
        app.router.add_get("/_matrix/media/v3/download/{serverName}/{mediaId}", self._legacy)
        app.router.add_get("/cdn/{mediaId}", self._legacy)
        return app

    async def _federation(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.path}?{request.query_string}")
        if not self.federation_endpoint:
            return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "no"}, status=404)
        broken = self.broken.get(request.match_info["mediaId"])
        if broken is not None:
            return web.Response(
                body=broken, headers={"Content-Type": "multipart/mixed; boundary=b"}
            )
        found = self.files.get(request.match_info["mediaId"])
        if found is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
        data, content_type, disposition = found
        boundary = "6b1d4c2e"
        if request.match_info["mediaId"] in self.redirected:
            location = f"https://{self.server_name}/cdn/{request.match_info['mediaId']}"
            media_headers, data = f"Location: {location}\r\n\r\n", b""
        else:
            media_headers = (
                f"Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
            )
        body = (
            (
                f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
                f"--{boundary}\r\n{media_headers}"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return web.Response(
            body=body, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}
        )

    async def _legacy(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.path}?{request.query_string}")
        data, content_type, disposition = self.files[request.match_info["mediaId"]]
        return web.Response(
            body=data, headers={"Content-Type": content_type, "Content-Disposition": disposition}
        )


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[MediaOrigin]:
    cert = make_certificate(tmp_path / "origin-tls", ["localhost"], ["127.0.0.1"])
    origin = MediaOrigin()
    async with serve(origin.app(), tls=cert.server_context()) as port:
        origin.port = port
        yield origin


def paths(requests: Iterable[str]) -> list[str]:
    return [request.split("?", 1)[0] for request in requests]


async def test_remote_media_is_fetched_once_and_cached(world: World, origin: MediaOrigin) -> None:
    origin.files["pic1"] = (b"remote bytes", "image/png", 'inline; filename="r.png"')
    served = await world.deps.media.download(origin.server_name, "pic1")
    assert served.path.read_bytes() == b"remote bytes"
    assert (served.content_type, served.filename) == ("image/png", "r.png")
    again = await world.deps.media.download(origin.server_name, "pic1")
    assert again.path == served.path
    assert paths(origin.requests) == ["/_matrix/federation/v1/media/download/pic1"]


async def test_an_origin_without_the_federation_endpoint_is_asked_the_legacy_way(
    world: World, origin: MediaOrigin
) -> None:
    origin.federation_endpoint = False
    origin.files["old1"] = (b"legacy bytes", "application/pdf", "attachment; filename=doc.pdf")
    served = await world.deps.media.download(origin.server_name, "old1")
    assert served.path.read_bytes() == b"legacy bytes"
    assert served.filename == "doc.pdf"
    legacy = origin.requests[-1]
    assert legacy.startswith(f"/_matrix/media/v3/download/{origin.server_name}/old1?")
    assert "allow_remote=false" in legacy


async def test_missing_and_oversized_remote_media(world: World, origin: MediaOrigin) -> None:
    with pytest.raises(MatrixError) as missing:
        await world.deps.media.download(origin.server_name, "nothere")
    assert (missing.value.status, missing.value.errcode) == (404, "M_NOT_FOUND")
    origin.files["huge"] = (b"x" * (MAX_UPLOAD + 1), "text/plain", "inline")
    with pytest.raises(MatrixError) as huge:
        await world.deps.media.download(origin.server_name, "huge")
    assert (huge.value.status, huge.value.errcode) == (502, "M_TOO_LARGE")


async def test_a_location_part_is_followed_to_the_bytes(world: World, origin: MediaOrigin) -> None:
    origin.files["cdn1"] = (b"from the cdn", "video/mp4", 'inline; filename="clip.mp4"')
    origin.redirected.add("cdn1")
    served = await world.deps.media.download(origin.server_name, "cdn1")
    assert served.path.read_bytes() == b"from the cdn"
    assert (served.content_type, served.filename) == ("video/mp4", "clip.mp4")
    assert paths(origin.requests) == ["/_matrix/federation/v1/media/download/cdn1", "/cdn/cdn1"]


async def test_a_malformed_multipart_answer_is_a_bad_gateway(
    world: World, origin: MediaOrigin
) -> None:
    origin.broken["nob"] = b"no boundary anywhere"
    origin.broken["badhdr"] = (
        b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nBad\r\n\r\nx"
    )
    origin.broken["onepart"] = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n"
    for media_id in origin.broken:
        with pytest.raises(MatrixError) as failed:
            await world.deps.media.download(origin.server_name, media_id)
        assert (failed.value.status, failed.value.errcode) == (502, "M_UNKNOWN"), media_id
