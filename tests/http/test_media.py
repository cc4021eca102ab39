"""The content repository through the real application: uploads (direct and asynchronous),
authenticated downloads and their headers, limits, the config, and the frozen legacy paths."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.http.account_helpers import SERVER_NAME, Client, running_server
from tests.http.room_helpers import User, register_users

MAX_UPLOAD = 4096
UPLOAD = "/_matrix/media/v3/upload"
CREATE = "/_matrix/media/v1/create"
DOWNLOAD = "/_matrix/client/v1/media/download"


@dataclass
class Raw:
    status: int
    body: bytes
    headers: Any

    def json(self) -> Any:
        return orjson.loads(self.body)


async def raw_call(
    client: Client,
    method: str,
    path: str,
    *,
    token: str | None = None,
    data: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> Raw:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with client.http.request(
        method, client.base_url + path, data=data, headers=sent, params=query
    ) as response:
        return Raw(response.status, await response.read(), response.headers)


async def upload(
    client: Client,
    user: User,
    data: bytes,
    content_type: str = "text/plain",
    filename: str | None = None,
) -> str:
    query = {"filename": filename} if filename is not None else None
    reply = await raw_call(
        client,
        "POST",
        UPLOAD,
        token=user.token,
        data=data,
        headers={"Content-Type": content_type},
        query=query,
    )
    assert reply.status == 200, reply.body
    uri = reply.json()["content_uri"]
    assert isinstance(uri, str)
    return uri


def download_path(uri: str, filename: str | None = None) -> str:
    server_name, media_id = uri.removeprefix("mxc://").split("/")
    path = f"{DOWNLOAD}/{server_name}/{media_id}"
    return path if filename is None else f"{path}/{filename}"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    media = {"max_upload_size": MAX_UPLOAD}
    async with running_server(tmp_path, migrated_db_dsn, pool, media=media) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def test_uploaded_file_downloads_with_its_type_name_and_safety_headers(
    client: Client, users: list[User]
) -> None:
    alice, bob = users
    uri = await upload(client, alice, b"hello media", "text/plain", filename="notes.txt")
    assert uri.startswith(f"mxc://{SERVER_NAME}/")
    reply = await raw_call(client, "GET", download_path(uri), token=bob.token)
    assert reply.status == 200 and reply.body == b"hello media"
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.headers["Content-Disposition"] == 'inline; filename="notes.txt"'
    assert reply.headers["Content-Security-Policy"].startswith("sandbox;")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


async def test_media_ids_are_random_and_distinct(client: Client, users: list[User]) -> None:
    alice, _ = users
    first = await upload(client, alice, b"same")
    second = await upload(client, alice, b"same")
    assert first != second
    media_id = first.rsplit("/", 1)[1]
    assert len(media_id) >= 20 and media_id.isalnum()


async def test_unsafe_types_are_served_as_attachments(client: Client, users: list[User]) -> None:
    alice, _ = users
    uri = await upload(client, alice, b"<script>alert(1)</script>", "text/html", "page.html")
    reply = await raw_call(client, "GET", download_path(uri), token=alice.token)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.headers["Content-Disposition"] == 'attachment; filename="page.html"'


async def test_file_name_in_the_path_replaces_the_uploaded_one(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    uri = await upload(client, alice, b"data", "application/pdf", "a.pdf")
    reply = await raw_call(client, "GET", download_path(uri, "b%C3%A9.pdf"), token=alice.token)
    assert reply.status == 200 and reply.body == b"data"
    assert reply.headers["Content-Disposition"] == "attachment; filename*=utf-8''b%C3%A9.pdf"


async def test_upload_without_a_name_or_type_is_octet_stream_without_a_name(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    reply = await raw_call(client, "POST", UPLOAD, token=alice.token, data=b"\x00\x01")
    assert reply.status == 200, reply.body
    fetched = await raw_call(
        client, "GET", download_path(reply.json()["content_uri"]), token=alice.token
    )
    assert fetched.headers["Content-Type"] == "application/octet-stream"
    assert fetched.headers["Content-Disposition"] == "attachment"


async def test_file_names_keep_only_their_last_component_and_refuse_control_characters(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    uri = await upload(client, alice, b"x", "text/plain", filename="../../etc/passwd")
    reply = await raw_call(client, "GET", download_path(uri), token=alice.token)
    assert reply.headers["Content-Disposition"] == 'inline; filename="passwd"'
    bad = await raw_call(
        client, "POST", UPLOAD, token=alice.token, data=b"x", query={"filename": "a\nb"}
    )
    assert bad.status == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"


async def test_upload_and_download_need_an_access_token(client: Client, users: list[User]) -> None:
    alice, _ = users
    refused = await raw_call(client, "POST", UPLOAD, data=b"x")
    assert refused.status == 401 and refused.json()["errcode"] == "M_MISSING_TOKEN"
    uri = await upload(client, alice, b"secret")
    anonymous = await raw_call(client, "GET", download_path(uri))
    assert anonymous.status == 401 and anonymous.json()["errcode"] == "M_MISSING_TOKEN"
    # nio and some clients send the token in the query string.
    with_query = await raw_call(
        client, "GET", download_path(uri), query={"access_token": alice.token}
    )
    assert with_query.status == 200 and with_query.body == b"secret"


async def test_upload_larger_than_the_limit_is_refused(client: Client, users: list[User]) -> None:
    alice, _ = users
    declared = await raw_call(
        client, "POST", UPLOAD, token=alice.token, data=b"x" * (MAX_UPLOAD + 1)
    )
    assert declared.status == 413 and declared.json()["errcode"] == "M_TOO_LARGE"

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 2000

    streamed = await raw_call(client, "POST", UPLOAD, token=alice.token, data=chunked())
    assert streamed.status == 413 and streamed.json()["errcode"] == "M_TOO_LARGE"
    exact = await raw_call(client, "POST", UPLOAD, token=alice.token, data=b"z" * MAX_UPLOAD)
    assert exact.status == 200


async def test_config_advertises_the_upload_limit(client: Client, users: list[User]) -> None:
    alice, _ = users
    for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config"):
        reply = await raw_call(client, "GET", path, token=alice.token)
        assert reply.status == 200 and reply.json() == {"m.upload.size": MAX_UPLOAD}


async def test_unknown_and_malformed_media_are_not_found(client: Client, users: list[User]) -> None:
    alice, _ = users
    for path in (
        f"{DOWNLOAD}/{SERVER_NAME}/doesnotexist",
        f"{DOWNLOAD}/{SERVER_NAME}/bad.id",
        f"{DOWNLOAD}/not..a..server/abc",
        # Federation is off in this server: other servers' media cannot be fetched.
        f"{DOWNLOAD}/elsewhere.test/abc",
    ):
        reply = await raw_call(client, "GET", path, token=alice.token)
        assert reply.status == 404 and reply.json()["errcode"] == "M_NOT_FOUND", path


async def test_legacy_unauthenticated_downloads_are_frozen(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    uri = await upload(client, alice, b"new media")
    media_path = uri.removeprefix("mxc://")
    for path in (
        f"/_matrix/media/v3/download/{media_path}",
        f"/_matrix/media/v3/download/{media_path}/name.txt",
        f"/_matrix/media/r0/download/{media_path}",
        f"/_matrix/media/v3/thumbnail/{media_path}?width=32&height=32",
    ):
        reply = await raw_call(client, "GET", path, token=alice.token)
        assert reply.status == 404 and reply.json()["errcode"] == "M_NOT_FOUND", path


async def test_create_then_upload_later(client: Client, users: list[User]) -> None:
    alice, bob = users
    created = await raw_call(client, "POST", CREATE, token=alice.token, data=b"{}")
    assert created.status == 200, created.body
    uri, expires = created.json()["content_uri"], created.json()["unused_expires_at"]
    assert expires > 0
    put_path = "/_matrix/media/v3/upload/" + uri.removeprefix("mxc://")
    early = await raw_call(
        client, "GET", download_path(uri), token=bob.token, query={"timeout_ms": "0"}
    )
    assert early.status == 504 and early.json()["errcode"] == "M_NOT_YET_UPLOADED"

    by_bob = await raw_call(client, "PUT", put_path, token=bob.token, data=b"bob's")
    assert by_bob.status == 403 and by_bob.json()["errcode"] == "M_FORBIDDEN"
    done = await raw_call(
        client,
        "PUT",
        put_path,
        token=alice.token,
        data=b"\x89PNG fake",
        headers={"Content-Type": "image/png"},
        query={"filename": "pic.png"},
    )
    assert done.status == 200 and done.json() == {}
    again = await raw_call(client, "PUT", put_path, token=alice.token, data=b"other")
    assert again.status == 409 and again.json()["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"

    fetched = await raw_call(client, "GET", download_path(uri), token=bob.token)
    assert fetched.status == 200 and fetched.body == b"\x89PNG fake"
    assert fetched.headers["Content-Disposition"] == 'inline; filename="pic.png"'


async def test_upload_to_an_id_that_was_never_created_is_not_found(
    client: Client, users: list[User]
) -> None:
    alice, _ = users
    reply = await raw_call(
        client,
        "PUT",
        f"/_matrix/media/v3/upload/{SERVER_NAME}/nevercreated",
        token=alice.token,
        data=b"x",
    )
    assert reply.status == 404 and reply.json()["errcode"] == "M_NOT_FOUND"
    elsewhere = await raw_call(
        client, "PUT", "/_matrix/media/v3/upload/other.test/abc", token=alice.token, data=b"x"
    )
    assert elsewhere.status == 404


async def test_a_download_waits_for_a_pending_upload(client: Client, users: list[User]) -> None:
    alice, bob = users
    created = await raw_call(client, "POST", CREATE, token=alice.token, data=b"{}")
    uri = created.json()["content_uri"]
    waiting = asyncio.create_task(
        raw_call(client, "GET", download_path(uri), token=bob.token, query={"timeout_ms": "10000"})
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    put_path = "/_matrix/media/v3/upload/" + uri.removeprefix("mxc://")
    done = await raw_call(client, "PUT", put_path, token=alice.token, data=b"arrived")
    assert done.status == 200
    reply = await asyncio.wait_for(waiting, 5)
    assert reply.status == 200 and reply.body == b"arrived"


async def test_pending_uploads_per_user_are_limited(client: Client, users: list[User]) -> None:
    alice, bob = users
    statuses = [
        (await raw_call(client, "POST", CREATE, token=alice.token, data=b"{}")).status
        for _ in range(11)
    ]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429
    other = await raw_call(client, "POST", CREATE, token=bob.token, data=b"{}")
    assert other.status == 200


async def test_media_is_stored_once_per_content_under_the_data_dir(
    client: Client, users: list[User], tmp_path: Path
) -> None:
    alice, _ = users
    await upload(client, alice, b"dedup me")
    await upload(client, alice, b"dedup me")
    stored = [p for p in (tmp_path / "media" / "content").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [b"dedup me"]
