"""The real application on ephemeral ports against a test database: endpoints and middleware."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import signedjson.key
import signedjson.sign
from aiohttp import web

from federation.signing import SigningKey, generate_signing_key
from homeserver.app import build_dependencies, build_listener_apps
from homeserver.config import Config, parse_config
from homeserver.http.client.versions import client_base_url
from homeserver.http.json_io import json_response, read_json_object
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage import database
from homeserver.storage.migrations import latest_version, load_migrations

SERVER_NAME = "veche.test:8448"
BODY_LIMIT = 4096
OLD_KEY_ID = "ed25519:old1"
OLD_KEY = generate_signing_key("old1")
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


def make_config(
    tmp_path: Path, dsn: str, listeners: list[dict[str, Any]], **extra: Any
) -> Config:
    return parse_config(
        {
            **extra,
            "server_name": SERVER_NAME,
            "data_dir": str(tmp_path),
            "signing_key_path": str(tmp_path / "signing.key"),
            "database": {"dsn": dsn, "min_connections": 1, "max_connections": 4},
            "listeners": listeners,
            "limits": {"max_request_body": BODY_LIMIT, "max_json_depth": 100},
            "old_verify_keys": {
                OLD_KEY_ID: {"key": OLD_KEY.public_key_base64, "expired_ts": 1_600_000_000_000}
            },
        },
        base_dir=tmp_path,
    )


# Routes only the tests add, to drive the middleware through handler behaviour.
async def echo_json(request: web.Request) -> web.Response:
    return json_response({"received": await read_json_object(request)})


async def explode(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail 0xdeadbeef")


async def database_refuses(request: web.Request) -> web.Response:
    await asyncpg.connect("postgresql://nobody@127.0.0.1:1/none", timeout=2)
    raise AssertionError("unreachable")


@dataclass
class RunningServer:
    client_url: str
    federation_url: str
    signing_key: SigningKey
    http: aiohttp.ClientSession
    client_port: int


def bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


async def start(
    config: Config,
    pool: asyncpg.Pool,
    key: SigningKey,
    schema_version: int | None = None,
    *,
    engine_pool: asyncpg.Pool | None = None,
) -> list[web.AppRunner]:
    """Serve `config`; handlers use `pool`. The room engine loads its stream position at
    start-up, so a test whose `pool` is dead hands a live `engine_pool` for that."""
    if schema_version is None:
        schema_version = latest_version(load_migrations())
    deps = await build_dependencies(config, engine_pool or pool, key, schema_version)
    if engine_pool is not None:
        deps = dataclasses.replace(deps, pool=pool)
    apps = build_listener_apps(deps)
    for _, app in apps:
        app.router.add_post("/_test/echo", echo_json)
        app.router.add_get("/_test/explode", explode)
        app.router.add_get("/_test/database", database_refuses)
    return await start_listeners(apps, config)


@pytest.fixture
async def server(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> AsyncIterator[RunningServer]:
    config = make_config(
        tmp_path,
        migrated_db_dsn,
        [
            {"type": "client", "bind": "127.0.0.1", "port": 0},
            {"type": "federation", "bind": "127.0.0.1", "port": 0},
        ],
        public_baseurl="https://matrix.veche.test/",
    )
    key = generate_signing_key()
    runners = await start(config, pool, key)
    client_port, federation_port = bound_port(runners[0]), bound_port(runners[1])
    async with aiohttp.ClientSession() as http:
        yield RunningServer(
            f"http://127.0.0.1:{client_port}",
            f"http://127.0.0.1:{federation_port}",
            key,
            http,
            client_port,
        )
    await stop_listeners(runners)


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, Any]:
    async with http.get(url) as response:
        return response.status, await response.json(content_type=None), response.headers


# ---- endpoints --------------------------------------------------------------------------------


async def test_versions_lists_v1_1_to_v1_19(server: RunningServer) -> None:
    status, body, _ = await get_json(server.http, server.client_url + "/_matrix/client/versions")
    assert status == 200
    assert body["versions"][0] == "v1.1"
    assert body["versions"][-1] == "v1.19"
    assert len(body["versions"]) == 19


async def test_well_known_client_serves_public_baseurl(server: RunningServer) -> None:
    status, body, _ = await get_json(server.http, server.client_url + "/.well-known/matrix/client")
    assert status == 200
    assert body == {"m.homeserver": {"base_url": "https://matrix.veche.test"}}


def test_client_base_url_defaults_to_client_listener_under_server_host(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, "postgresql://x@/y", [{"type": "client", "bind": "127.0.0.1", "port": 8008}]
    )
    assert client_base_url(config) == "http://veche.test:8008"


async def test_well_known_server_names_the_federation_address(server: RunningServer) -> None:
    status, body, _ = await get_json(server.http, server.client_url + "/.well-known/matrix/server")
    assert status == 200
    assert body == {"m.server": SERVER_NAME}


async def test_federation_version_names_veche(server: RunningServer) -> None:
    url = server.federation_url + "/_matrix/federation/v1/version"
    status, body, _ = await get_json(server.http, url)
    assert status == 200
    assert body["server"]["name"] == "Veche"
    assert isinstance(body["server"]["version"], str)


async def test_server_keys_verify_with_signedjson_against_their_own_key(
    server: RunningServer,
) -> None:
    before = int(time.time() * 1000)
    status, body, _ = await get_json(server.http, server.federation_url + "/_matrix/key/v2/server")
    assert status == 200
    assert body["server_name"] == SERVER_NAME
    key_id = server.signing_key.key_id
    published = body["verify_keys"][key_id]["key"]
    assert published == server.signing_key.public_key_base64
    algorithm, version = key_id.split(":")
    verify_key = signedjson.key.decode_verify_key_base64(algorithm, version, published)
    signedjson.sign.verify_signed_json(body, SERVER_NAME, verify_key)  # raises if invalid
    assert before < body["valid_until_ts"] <= int(time.time() * 1000) + SEVEN_DAYS_MS
    assert body["old_verify_keys"] == {
        OLD_KEY_ID: {"key": OLD_KEY.public_key_base64, "expired_ts": 1_600_000_000_000}
    }


async def test_deprecated_key_path_with_key_id_gives_the_same_signed_keys(
    server: RunningServer,
) -> None:
    key_id = server.signing_key.key_id
    url = f"{server.federation_url}/_matrix/key/v2/server/{key_id}"
    status, body, _ = await get_json(server.http, url)
    assert status == 200
    _, current, _ = await get_json(server.http, server.federation_url + "/_matrix/key/v2/server")
    assert body == current
    algorithm, version = key_id.split(":")
    verify_key = signedjson.key.decode_verify_key_base64(
        algorithm, version, body["verify_keys"][key_id]["key"]
    )
    signedjson.sign.verify_signed_json(body, SERVER_NAME, verify_key)


async def test_tampered_key_response_fails_verification(server: RunningServer) -> None:
    _, body, _ = await get_json(server.http, server.federation_url + "/_matrix/key/v2/server")
    key_id = server.signing_key.key_id
    algorithm, version = key_id.split(":")
    verify_key = signedjson.key.decode_verify_key_base64(
        algorithm, version, body["verify_keys"][key_id]["key"]
    )
    body["valid_until_ts"] += 1
    with pytest.raises(signedjson.sign.SignatureVerifyException):
        signedjson.sign.verify_signed_json(body, SERVER_NAME, verify_key)


async def test_routes_stay_on_their_listener_type(server: RunningServer) -> None:
    status, body, _ = await get_json(server.http, server.client_url + "/_matrix/key/v2/server")
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    url = server.federation_url + "/_matrix/client/versions"
    status, body, _ = await get_json(server.http, url)
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_health_is_ok_when_migrated_and_reachable(server: RunningServer) -> None:
    async with server.http.get(server.client_url + "/health") as response:
        assert response.status == 200
        assert await response.text() == "OK"


async def test_health_is_503_when_schema_is_behind_the_code(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    listeners = [{"type": "client", "bind": "127.0.0.1", "port": 0}]
    config = make_config(tmp_path, migrated_db_dsn, listeners)
    newest = latest_version(load_migrations())
    runners = await start(config, pool, generate_signing_key(), schema_version=newest + 1)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{bound_port(runners[0])}/health"
            status, body, _ = await get_json(http, url)
        assert status == 503
        assert body["errcode"] == "M_UNKNOWN"
    finally:
        await stop_listeners(runners)


async def test_health_and_requests_are_503_while_database_unreachable(
    tmp_path: Path, pool: asyncpg.Pool
) -> None:
    # A pool that has never connected and cannot: PostgreSQL "down" for every handler.
    live_pool = pool
    dead_dsn = "postgresql://nobody@127.0.0.1:1/veche"
    pool = await database.create_pool(dead_dsn, min_connections=0, max_connections=1)
    config = make_config(tmp_path, dead_dsn, [{"type": "client", "bind": "127.0.0.1", "port": 0}])
    runners = await start(config, pool, generate_signing_key(), engine_pool=live_pool)
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{bound_port(runners[0])}"
            for path in ("/health", "/_test/database"):
                started = time.monotonic()
                status, body, headers = await get_json(http, base + path)
                assert status == 503, path
                assert body == {"errcode": "M_UNKNOWN", "error": "database unavailable"}
                assert int(headers["Retry-After"]) > 0
                assert time.monotonic() - started < 10
    finally:
        await stop_listeners(runners)
        await pool.close()


async def test_service_resumes_after_database_connections_are_killed(
    server: RunningServer, migrated_db_dsn: str
) -> None:
    killer = await asyncpg.connect(migrated_db_dsn)
    try:
        killed = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await killer.close()
    assert killed >= 1
    statuses = []
    for _ in range(3):
        async with server.http.get(server.client_url + "/health") as response:
            statuses.append(response.status)
            if response.status == 503:
                assert await response.json() == {
                    "errcode": "M_UNKNOWN",
                    "error": "database unavailable",
                }
    assert statuses[-1] == 200, statuses


async def test_client_and_federation_can_share_one_port(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(
        tmp_path,
        migrated_db_dsn,
        [
            {"type": "client", "bind": "127.0.0.1", "port": port},
            {"type": "federation", "bind": "127.0.0.1", "port": port},
        ],
    )
    runners = await start(config, pool, generate_signing_key())
    try:
        assert len(runners) == 1
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            assert (await get_json(http, base + "/_matrix/client/versions"))[0] == 200
            assert (await get_json(http, base + "/_matrix/key/v2/server"))[0] == 200
    finally:
        await stop_listeners(runners)


# ---- error middleware -------------------------------------------------------------------------


async def test_unknown_endpoint_is_404_unrecognized(server: RunningServer) -> None:
    status, body, _ = await get_json(server.http, server.client_url + "/_matrix/client/v3/nope")
    assert status == 404
    assert body["errcode"] == "M_UNRECOGNIZED"


async def test_wrong_method_is_405_unrecognized(server: RunningServer) -> None:
    async with server.http.post(server.client_url + "/_matrix/client/versions") as response:
        assert response.status == 405
        assert (await response.json())["errcode"] == "M_UNRECOGNIZED"
        assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"a string"',
        b'{"a": "\xff\xfe"}',  # invalid UTF-8
        b'{"a": "\\ud800"}',  # lone surrogate
        b'{"a": NaN}',
        b"{" + b'"a":{' * 100 + b"}" * 101,  # 101 levels
    ],
    ids=["unparsable", "empty", "array", "string", "bad-utf8", "surrogate", "nan", "too-deep"],
)
async def test_bad_json_is_400_not_json(server: RunningServer, body: bytes) -> None:
    async with server.http.post(server.client_url + "/_test/echo", data=body) as response:
        assert response.status == 400
        assert (await response.json())["errcode"] == "M_NOT_JSON"


async def test_json_at_the_depth_limit_is_accepted(server: RunningServer) -> None:
    body = b'{"a":' * 99 + b"{}" + b"}" * 99  # exactly 100 levels
    async with server.http.post(server.client_url + "/_test/echo", data=body) as response:
        assert response.status == 200


async def test_body_at_the_limit_is_accepted(server: RunningServer) -> None:
    body = json.dumps({"pad": "x" * (BODY_LIMIT - 11)}).encode()
    assert len(body) == BODY_LIMIT
    async with server.http.post(server.client_url + "/_test/echo", data=body) as response:
        assert response.status == 200


async def read_http_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_declared_oversized_body_is_413_before_it_is_sent(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.client_port)
    try:
        # Declare 100 MiB but send only the headers and 1 KiB: the answer must come anyway.
        writer.write(
            b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n" + b" " * 1024
        )
        await writer.drain()
        status, headers, body = await asyncio.wait_for(read_http_response(reader), 5)
        assert status == 413
        assert json.loads(body)["errcode"] == "M_TOO_LARGE"
        assert headers.get("connection", "").lower() == "close"
    finally:
        writer.close()


async def test_chunked_oversized_body_is_413_without_reading_it_all(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.client_port)
    try:
        chunk = b" " * (BODY_LIMIT + 100)
        writer.write(
            b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )  # ... and the body never ends
        await writer.drain()
        status, _, body = await asyncio.wait_for(read_http_response(reader), 5)
        assert status == 413
        assert json.loads(body)["errcode"] == "M_TOO_LARGE"
    finally:
        writer.close()


async def test_unexpected_error_is_500_without_details(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="homeserver.errors"):
        async with server.http.get(server.client_url + "/_test/explode") as response:
            assert response.status == 500
            text = await response.text()
    assert json.loads(text) == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert "deadbeef" not in text
    logged = [r for r in caplog.records if r.name == "homeserver.errors"]
    assert logged and logged[0].exc_info is not None
    assert "secret internal detail 0xdeadbeef" in caplog.text


# ---- CORS and access log ----------------------------------------------------------------------


async def test_client_responses_carry_cors_headers(server: RunningServer) -> None:
    for path in ("/_matrix/client/versions", "/.well-known/matrix/client", "/nope"):
        _, _, headers = await get_json(server.http, server.client_url + path)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        assert "PUT" in headers["Access-Control-Allow-Methods"]


async def test_preflight_answers_without_running_the_endpoint(server: RunningServer) -> None:
    async with server.http.options(server.client_url + "/_test/explode") as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "OPTIONS" in response.headers["Access-Control-Allow-Methods"]


async def test_federation_api_has_no_cors_headers(server: RunningServer) -> None:
    url = server.federation_url + "/_matrix/federation/v1/version"
    _, _, headers = await get_json(server.http, url)
    assert "Access-Control-Allow-Origin" not in headers


async def test_access_log_has_one_line_per_request_without_tokens(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.client_url + "/_matrix/client/versions?access_token=syt_secret_token&x=1"
    with caplog.at_level(logging.INFO, logger="homeserver.access"):
        await get_json(server.http, url)
    lines = [r.getMessage() for r in caplog.records if r.name == "homeserver.access"]
    assert len(lines) == 1
    assert "GET /_matrix/client/versions?access_token=<redacted>&x=1 200" in lines[0]
    assert lines[0].endswith("ms")
    assert "syt_secret_token" not in caplog.text
