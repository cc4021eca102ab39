"""Serving as a notary (S2S "Querying Keys Through Another Server"): our own keys and other
servers' cached keys, signed by us; and our keyring using a Veche notary end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from federation.keys import build_server_keys, parse_and_verify_server_keys
from federation.signing import SigningKey, generate_signing_key, verify_json
from homeserver.errors import error_middleware
from homeserver.http.federation.key_query import KeyQueryResource, add_routes
from homeserver.http.middleware import REQUEST_LIMITS, RequestLimits
from homeserver.remote.keyring import Keyring, Notary, OwnKeys
from homeserver.storage import database
from homeserver.storage.migrations import apply_migrations
from tests.remote.fakes import DAY_MS, OUR_KEY, OUR_NAME, World, free_port, now_ms
from tests.remote.support import serve

REMOTE_KEY_ID = "ed25519:remote1"


def notary_app(
    world: World, pool: asyncpg.Pool, server_name: str, key: SigningKey
) -> web.Application:
    """The real notary endpoints, as Veche serves them, for `server_name`."""
    own_response = orjson.dumps(build_server_keys(server_name, key, now_ms() + DAY_MS))
    resource = KeyQueryResource(
        server_name=server_name,
        signing_key=key,
        own_key_response=lambda: own_response,
        keyring=Keyring(own=OwnKeys(server_name, key), db=pool, requester=world.client()),
        db=pool,
    )
    app = web.Application(middlewares=[error_middleware])
    app[REQUEST_LIMITS] = RequestLimits(max_request_body=65536, max_json_depth=100)
    add_routes(app.router, resource)
    return app


@dataclass
class NotaryClient:
    base: str
    session: aiohttp.ClientSession

    async def get(self, server_name: str, **query: Any) -> tuple[int, Any]:
        url = f"{self.base}/_matrix/key/v2/query/{server_name}"
        async with self.session.get(url, params=query) as response:
            return response.status, await response.json()

    async def post(self, body: Any) -> tuple[int, Any]:
        async with self.session.post(f"{self.base}/_matrix/key/v2/query", json=body) as response:
            return response.status, await response.json()


@pytest.fixture
async def notary(world: World, pool: asyncpg.Pool) -> AsyncIterator[NotaryClient]:
    async with (
        serve(notary_app(world, pool, OUR_NAME, OUR_KEY)) as port,
        aiohttp.ClientSession() as session,
    ):
        yield NotaryClient(f"http://127.0.0.1:{port}", session)


def check_notarised(entry: dict[str, Any], server_name: str) -> None:
    """Self-signed by `server_name` and signed by us."""
    parse_and_verify_server_keys(entry, expected_server_name=server_name)
    verify_json(entry, OUR_NAME, OUR_KEY.key_id, OUR_KEY.public_key)


async def test_our_own_keys_are_served(notary: NotaryClient) -> None:
    status, body = await notary.get(OUR_NAME)
    assert status == 200
    [entry] = body["server_keys"]
    keys = parse_and_verify_server_keys(entry, expected_server_name=OUR_NAME)
    assert keys.verify_keys == {OUR_KEY.key_id: OUR_KEY.public_key}


async def test_other_servers_keys_are_fetched_cached_and_signed_by_us(
    notary: NotaryClient, world: World
) -> None:
    remote = world.remote
    for _ in range(2):
        status, body = await notary.get(remote.server_name)
        assert status == 200
        [entry] = body["server_keys"]
        check_notarised(entry, remote.server_name)
    assert remote.requests["keys"] == 1  # the second answer came from the cache


async def test_cached_keys_are_served_while_the_server_is_down(
    notary: NotaryClient, world: World
) -> None:
    remote = world.remote
    await notary.get(remote.server_name)
    remote.key_response = lambda _: web.json_response({"errcode": "M_UNKNOWN"}, status=503)
    # Keys valid beyond what we hold cannot be had (the server was asked moments ago and is
    # not asked again so soon); the last response is still served, so that old signatures
    # can be checked (keys_server.yaml).
    status, body = await notary.get(
        remote.server_name, minimum_valid_until_ts=now_ms() + 3 * DAY_MS
    )
    assert status == 200 and len(body["server_keys"]) == 1
    check_notarised(body["server_keys"][0], remote.server_name)
    assert remote.requests["keys"] == 1


async def test_unreachable_or_invalid_servers_give_an_empty_list(
    notary: NotaryClient, world: World
) -> None:
    assert await notary.get(f"remote.test:{world.closed_port}") == (200, {"server_keys": []})
    assert await notary.get("not a server name") == (200, {"server_keys": []})


async def test_batch_query_covers_every_server_asked(notary: NotaryClient, world: World) -> None:
    remote = world.remote
    status, body = await notary.post(
        {
            "server_keys": {
                remote.server_name: {REMOTE_KEY_ID: {"minimum_valid_until_ts": now_ms()}},
                OUR_NAME: {},
                f"remote.test:{world.closed_port}": {},
            }
        }
    )
    assert status == 200
    by_server = {entry["server_name"]: entry for entry in body["server_keys"]}
    assert set(by_server) == {remote.server_name, OUR_NAME}
    check_notarised(by_server[remote.server_name], remote.server_name)
    assert await notary.post({"server_keys": {}}) == (200, {"server_keys": []})


BAD_BATCH_QUERIES: list[Any] = [
    {},  # no server_keys
    {"server_keys": []},
    {"server_keys": {"a.test": []}},
    {"server_keys": {"a.test": {"ed25519:x": 5}}},
    {"server_keys": {"a.test": {"ed25519:x": {"minimum_valid_until_ts": "soon"}}}},
    {"server_keys": {f"s{i}.test": {} for i in range(101)}},  # too many servers at once
]


async def test_bad_batch_queries_are_refused(notary: NotaryClient) -> None:
    for body in BAD_BATCH_QUERIES:
        status, answer = await notary.post(body)
        assert (status, answer["errcode"]) == (400, "M_BAD_JSON"), body


async def test_bad_minimum_valid_until_ts_is_refused(notary: NotaryClient) -> None:
    status, answer = await notary.get(OUR_NAME, minimum_valid_until_ts="tomorrow")
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")


async def test_a_keyring_gets_keys_through_a_veche_notary(
    world: World, pool: asyncpg.Pool, db_dsn: str
) -> None:
    remote = world.remote
    port = free_port()
    notary_name, notary_key = f"notary.test:{port}", generate_signing_key("n1")
    app = notary_app(world, pool, notary_name, notary_key)
    other_db = await database.connect(db_dsn)  # a second server's own database
    try:
        await apply_migrations(other_db)
    finally:
        await other_db.close()
    other_pool = await database.create_pool(db_dsn, min_connections=1, max_connections=2)
    async with serve(app, tls=world.cert.server_context(), port=port):
        try:
            # The notary learns the remote's keys while it is up; then the remote goes down.
            keyring = Keyring(
                own=OwnKeys("third.test", generate_signing_key("t")),
                db=other_pool,
                requester=world.client(),
                notaries=[Notary(notary_name, {notary_key.key_id: notary_key.public_key})],
            )
            async with aiohttp.ClientSession() as session:
                url = f"https://127.0.0.1:{port}/_matrix/key/v2/query/{remote.server_name}"
                async with session.get(url, ssl=False) as response:
                    assert response.status == 200
            remote.key_response = lambda _: web.json_response({}, status=503)
            key = await keyring.get_verify_key(remote.server_name, REMOTE_KEY_ID, now_ms())
            assert key == remote.key.public_key
        finally:
            await other_pool.close()
