"""Media across two real Veche servers: a user of B downloads (and thumbnails) a file uploaded
on A; B fetches it over federation once and serves it from its cache afterwards."""

from __future__ import annotations

import io

import orjson
from PIL import Image

from tests.integration.test_two_servers import Servers, User


async def raw(user: User, method: str, path: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {user.token}"}
    if data is not None:
        headers["Content-Type"] = "image/png"
    async with user.server.http.request(
        method, user.server.client_url + path, data=data, headers=headers
    ) as response:
        return response.status, await response.read()


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), "green").save(out, "PNG")
    return out.getvalue()


async def test_a_user_of_b_downloads_media_uploaded_on_a(servers: Servers) -> None:
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    data = picture()
    status, body = await raw(alice, "POST", "/_matrix/media/v3/upload?filename=pic.png", data)
    assert status == 200, body
    uri = orjson.loads(body)["content_uri"]
    assert uri.startswith(f"mxc://{servers.a.name}/")
    media_path = uri.removeprefix("mxc://")

    status, fetched = await raw(bob, "GET", f"/_matrix/client/v1/media/download/{media_path}")
    assert status == 200 and fetched == data
    status, thumb = await raw(
        bob,
        "GET",
        f"/_matrix/client/v1/media/thumbnail/{media_path}?width=32&height=32&method=crop",
    )
    assert status == 200 and Image.open(io.BytesIO(thumb)).size == (32, 32)

    # B keeps its copy: the cache row names A as the origin and the same bytes.
    media_id = media_path.rsplit("/", 1)[1]
    row = await servers.b.deps.pool.fetchrow(
        "SELECT content_type, media_length, upload_name FROM remote_media_cache "
        "WHERE origin = $1 AND media_id = $2",
        servers.a.name,
        media_id,
    )
    assert row is not None and dict(row) == {
        "content_type": "image/png",
        "media_length": len(data),
        "upload_name": "pic.png",
    }

    status, missing = await raw(
        bob, "GET", f"/_matrix/client/v1/media/download/{servers.a.name}/doesnotexist"
    )
    assert status == 404, missing
