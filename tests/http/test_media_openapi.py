"""The content repository's JSON answers checked against the spec's OpenAPI documents
(content-repo.yaml and authed-content-repo.yaml), success and error responses alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import Client, running_server
from tests.http.room_helpers import User, register_users
from tests.http.test_media import Raw, raw_call
from tests.openapi_schema import ClientServerSpec, SpecMissingError, client_server_spec

MAX_UPLOAD = 2048


@pytest.fixture(scope="module")
def spec() -> ClientServerSpec:
    try:
        return client_server_spec()
    except SpecMissingError as error:
        pytest.fail(str(error))


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    media = {"max_upload_size": MAX_UPLOAD}
    async with running_server(tmp_path, migrated_db_dsn, pool, media=media) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


def conforms(spec: ClientServerSpec, reply: Raw, path: str, method: str, status: int) -> Any:
    assert reply.status == status, (method, path, reply.status, reply.body)
    body = reply.json()
    mismatches = spec.mismatches(path, method, status, body)
    assert not mismatches, f"{method} {path} {status}:\n" + "\n".join(mismatches)
    return body


async def test_upload_create_and_config_answers_match_the_spec(
    spec: ClientServerSpec, client: Client, users: list[User]
) -> None:
    alice, bob = users
    token = alice.token
    uploaded = await raw_call(client, "POST", "/_matrix/media/v3/upload", token=token, data=b"a")
    conforms(spec, uploaded, "/media/v3/upload", "post", 200)
    too_large = await raw_call(
        client, "POST", "/_matrix/media/v3/upload", token=token, data=b"a" * (MAX_UPLOAD + 1)
    )
    conforms(spec, too_large, "/media/v3/upload", "post", 413)

    created = await raw_call(client, "POST", "/_matrix/media/v1/create", token=token, data=b"{}")
    uri = conforms(spec, created, "/media/v1/create", "post", 200)["content_uri"]
    media_path = uri.removeprefix("mxc://")
    put = "/media/v3/upload/{serverName}/{mediaId}"
    not_yet = await raw_call(
        client,
        "GET",
        f"/_matrix/client/v1/media/download/{media_path}",
        token=bob.token,
        query={"timeout_ms": "0"},
    )
    conforms(spec, not_yet, "/media/download/{serverName}/{mediaId}", "get", 504)
    path = f"/_matrix/media/v3/upload/{media_path}"
    forbidden = await raw_call(client, "PUT", path, token=bob.token, data=b"b")
    conforms(spec, forbidden, put, "put", 403)
    done = await raw_call(client, "PUT", path, token=token, data=b"b")
    conforms(spec, done, put, "put", 200)
    again = await raw_call(client, "PUT", path, token=token, data=b"c")
    conforms(spec, again, put, "put", 409)
    unknown = await raw_call(
        client, "PUT", path.rsplit("/", 1)[0] + "/unknownmedia", token=token, data=b"c"
    )
    conforms(spec, unknown, put, "put", 404)

    config = await raw_call(client, "GET", "/_matrix/client/v1/media/config", token=token)
    conforms(spec, config, "/media/config", "get", 200)
    legacy = await raw_call(client, "GET", "/_matrix/media/v3/config", token=token)
    conforms(spec, legacy, "/media/v3/config", "get", 200)


async def test_thumbnail_refusal_matches_the_spec(
    spec: ClientServerSpec, client: Client, users: list[User]
) -> None:
    alice, _ = users
    text = await raw_call(
        client,
        "POST",
        "/_matrix/media/v3/upload",
        token=alice.token,
        data=b"words",
        headers={"Content-Type": "text/plain"},
    )
    media_path = text.json()["content_uri"].removeprefix("mxc://")
    refused = await raw_call(
        client,
        "GET",
        f"/_matrix/client/v1/media/thumbnail/{media_path}",
        token=alice.token,
        query={"width": "32", "height": "32"},
    )
    conforms(spec, refused, "/media/thumbnail/{serverName}/{mediaId}", "get", 400)
