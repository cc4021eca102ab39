"""OpenID tokens (and the federation userinfo check), third-party identifiers, TURN
credentials, /.well-known/matrix/support and room summaries, against the real app and
PostgreSQL, with responses checked against the spec's OpenAPI files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from federation.signing import generate_signing_key
from homeserver.errors import error_middleware
from homeserver.http.client.openid import USERINFO_PATH, add_userinfo_route
from homeserver.server import stop_listeners
from homeserver.services.openid import OpenIdTokens
from homeserver.services.remote_room_summary import parse_hierarchy_room
from homeserver.services.room_summary import RoomSummaries
from homeserver.storage.room_directory import RoomDirectoryStore
from tests.http.account_helpers import SERVER_NAME, running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.http.test_foundation_endpoints import bound_port, make_config, start
from tests.openapi_schema import client_server_spec

TURN = {
    "turn_uris": ["turn:turn.example.com:3478?transport=udp"],
    "turn_shared_secret": "s3cret",
    "turn_user_lifetime": "1d",
}
SUPPORT = {
    "contacts": [{"role": "m.role.admin", "matrix_id": "@admin:example.com"}],
    "support_page": "https://example.com/help",
}


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


def conforms(path: str, method: str, status: int, body: Any) -> None:
    assert client_server_spec().mismatches(path, method, status, body) == []


# --- OpenID -----------------------------------------------------------------------------------


async def test_openid_token_identifies_its_user_to_a_third_party(
    users: list[User], pool: asyncpg.Pool
) -> None:
    alice, bob = users
    reply = await alice.call("POST", f"/user/{q(alice.user_id)}/openid/request_token", {})
    assert reply.status == 200, reply.body
    conforms("/user/{userId}/openid/request_token", "post", 200, reply.body)
    assert reply.body["matrix_server_name"] == SERVER_NAME
    assert reply.body["token_type"] == "Bearer" and reply.body["expires_in"] > 0
    for_bob = await alice.call("POST", f"/user/{q(bob.user_id)}/openid/request_token", {})
    assert (for_bob.status, for_bob.body["errcode"]) == (403, "M_FORBIDDEN")
    # The token is no client access token.
    misuse = await alice.client.call("GET", "/account/whoami", token=reply.body["access_token"])
    assert misuse.status == 401

    app = web.Application(middlewares=[error_middleware])
    add_userinfo_route(app.router, OpenIdTokens(pool, SERVER_NAME))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}{USERINFO_PATH}"
            params = {"access_token": reply.body["access_token"]}
            async with http.get(url, params=params) as known:
                assert (known.status, await known.json()) == (200, {"sub": alice.user_id})
            async with http.get(url, params={"access_token": "forged"}) as forged:
                assert forged.status == 401
                assert (await forged.json())["errcode"] == "M_UNKNOWN_TOKEN"
            async with http.get(url) as missing:
                assert missing.status == 401
    finally:
        await runner.cleanup()


async def test_openid_tokens_expire(pool: asyncpg.Pool, users: list[User]) -> None:
    alice, _ = users
    now = [1_000_000]
    tokens = OpenIdTokens(pool, SERVER_NAME, clock=lambda: now[0])
    issued = await tokens.request_token(alice.user_id, alice.user_id)
    assert await tokens.user_info(issued["access_token"]) == {"sub": alice.user_id}
    now[0] += issued["expires_in"] * 1000
    with pytest.raises(Exception, match="M_UNKNOWN_TOKEN"):
        await tokens.user_info(issued["access_token"])


# --- third-party identifiers ------------------------------------------------------------------


async def test_accounts_have_no_threepids_and_cannot_add_any(users: list[User]) -> None:
    alice, _ = users
    listed = await alice.call("GET", "/account/3pid")
    assert (listed.status, listed.body) == (200, {"threepids": []})
    conforms("/account/3pid", "get", 200, listed.body)
    request = {"client_secret": "abc", "email": "a@example.com", "send_attempt": 1}
    for path in ("/register/email/requestToken", "/account/3pid/email/requestToken"):
        refused = await alice.client.call("POST", path, request)
        assert (refused.status, refused.body["errcode"]) == (403, "M_THREEPID_DENIED")
    add = await alice.call("POST", "/account/3pid/add", {"client_secret": "a", "sid": "b"})
    assert (add.status, add.body["errcode"]) == (403, "M_THREEPID_DENIED")
    removed = await alice.call(
        "POST", "/account/3pid/delete", {"medium": "email", "address": "a@example.com"}
    )
    assert removed.status == 200
    conforms("/account/3pid/delete", "post", 200, removed.body)
    incomplete = await alice.call("POST", "/account/3pid/delete", {"medium": "email"})
    assert incomplete.status == 400


# --- TURN -------------------------------------------------------------------------------------


async def test_turn_server_without_configuration_is_empty(users: list[User]) -> None:
    alice, _ = users
    reply = await alice.call("GET", "/voip/turnServer")
    assert (reply.status, reply.body) == (200, {})
    assert (await alice.client.call("GET", "/voip/turnServer")).status == 401


async def test_turn_credentials_follow_the_turn_rest_convention(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool, voip=TURN) as client:
        (alice,) = await register_users(client, "alice")
        before = int(time.time())
        reply = await alice.call("GET", "/voip/turnServer")
        assert reply.status == 200
        conforms("/voip/turnServer", "get", 200, reply.body)
        body = reply.body
        assert body["uris"] == TURN["turn_uris"] and body["ttl"] == 86400
        expiry, user_id = body["username"].split(":", 1)
        assert user_id == alice.user_id
        assert before + 86400 <= int(expiry) <= int(time.time()) + 86400
        mac = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
        assert body["password"] == base64.b64encode(mac).decode()


# --- support ----------------------------------------------------------------------------------


async def get_support(client: Client) -> tuple[int, Any]:
    # Client.call prefixes /_matrix/client/v3; the well-known file lives at the root.
    async with client.http.get(client.base_url + "/.well-known/matrix/support") as response:
        return response.status, await response.json()


async def test_support_is_not_found_until_configured(
    client: Client, tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    status, body = await get_support(client)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    async with running_server(tmp_path, migrated_db_dsn, pool, support=SUPPORT) as configured:
        status, body = await get_support(configured)
        assert (status, body) == (200, SUPPORT)
        path = "/matrix/support"  # support.yaml: under the /.well-known base path
        assert client_server_spec().mismatches(path, "get", 200, body) == []


# --- room summaries ---------------------------------------------------------------------------

SUMMARY_PATH = "/room_summary/{roomIdOrAlias}"  # room_summary.yaml, base path /_matrix/client/v1


async def summary(client: Client, room: str, token: str | None = None) -> Any:
    return await client.call("GET", f"/_matrix/client/v1/room_summary/{q(room)}", token=token)


async def test_public_room_summary_for_anyone(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(
        preset="public_chat", name="Lobby", topic="hello", room_alias_name="lobby"
    )
    anonymous = await summary(alice.client, room_id)
    assert anonymous.status == 200, anonymous.body
    conforms(SUMMARY_PATH, "get", 200, anonymous.body)
    body = anonymous.body
    assert (body["room_id"], body["name"], body["topic"]) == (room_id, "Lobby", "hello")
    assert body["join_rule"] == "public" and body["num_joined_members"] == 1
    assert "membership" not in body
    by_alias = await summary(alice.client, f"#lobby:{SERVER_NAME}", bob.token)
    assert by_alias.status == 200 and by_alias.body["room_id"] == room_id
    assert "membership" not in by_alias.body
    own = await summary(alice.client, room_id, alice.token)
    assert own.body["membership"] == "join"


async def test_private_room_summary_only_for_members(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="private_chat")
    for token in (None, bob.token):
        hidden = await summary(alice.client, room_id, token)
        assert (hidden.status, hidden.body["errcode"]) == (404, "M_NOT_FOUND")
    assert (await alice.invite(room_id, bob.user_id)).status == 200
    invited = await summary(alice.client, room_id, bob.token)
    assert invited.status == 200 and invited.body["membership"] == "invite"
    conforms(SUMMARY_PATH, "get", 200, invited.body)
    unknown = await summary(alice.client, "!nowhere:elsewhere.test", alice.token)
    assert unknown.status == 404
    no_alias = await summary(alice.client, f"#missing:{SERVER_NAME}", alice.token)
    assert (no_alias.status, no_alias.body["errcode"]) == (404, "M_NOT_FOUND")
    garbage = await summary(alice.client, "lobby", alice.token)
    assert garbage.status == 400


REMOTE_ROOM = "!far:remote.test"


def remote_summary(**fields: Any) -> dict[str, Any]:
    return {
        "room_id": REMOTE_ROOM,
        "num_joined_members": 3,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
        "name": "Far away",
        "children_state": [],
        **fields,
    }


class FakeRemote:
    """Other servers' hierarchy answers, by server name."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[list[str]] = []

    async def __call__(self, room_id: str, servers: Any) -> Any:
        self.asked.append(list(servers))
        for server in servers:
            room = parse_hierarchy_room(room_id, self.answers.get(server))
            if room is not None:
                return room
        return None


def summaries_with(client: Client, remote: FakeRemote) -> RoomSummaries:
    deps = client.deps
    directory = RoomDirectoryStore(deps.pool)
    return RoomSummaries(deps.engine.state, deps.room_services.aliases, directory, remote)


async def test_rooms_elsewhere_are_summarised_by_the_servers_in_via(users: list[User]) -> None:
    alice, _ = users
    remote = FakeRemote({"good.test": {"room": remote_summary()}, "bad.test": {"room": []}})
    summaries = summaries_with(alice.client, remote)
    found = await summaries.summary(REMOTE_ROOM, alice.user_id, ["bad.test", "good.test"])
    assert found["name"] == "Far away" and "children_state" not in found
    assert "membership" not in found
    conforms(SUMMARY_PATH, "get", 200, found)
    # Without via, the room ID's server is asked (it does not answer here).
    with pytest.raises(Exception, match="M_NOT_FOUND"):
        await summaries.summary(REMOTE_ROOM, None)
    assert remote.asked[-1] == ["remote.test"]
    with pytest.raises(Exception, match="M_NOT_FOUND"):
        await summaries.summary(REMOTE_ROOM, alice.user_id, ["bad.test"])


async def test_private_rooms_elsewhere_stay_hidden_unless_allowed(users: list[User]) -> None:
    alice, _ = users
    private = remote_summary(join_rule="invite")
    summaries = summaries_with(alice.client, FakeRemote({"remote.test": {"room": private}}))
    with pytest.raises(Exception, match="M_NOT_FOUND"):
        await summaries.summary(REMOTE_ROOM, alice.user_id)
    # Restricted to a room alice is joined to: she may look.
    space = await alice.create_room()
    restricted = remote_summary(join_rule="restricted", allowed_room_ids=[space])
    summaries = summaries_with(alice.client, FakeRemote({"remote.test": {"room": restricted}}))
    found = await summaries.summary(REMOTE_ROOM, alice.user_id)
    assert found["allowed_room_ids"] == [space]
    with pytest.raises(Exception, match="M_NOT_FOUND"):
        await summaries.summary(REMOTE_ROOM, None)


def test_malformed_hierarchy_answers_are_refused() -> None:
    assert parse_hierarchy_room(REMOTE_ROOM, {"room": remote_summary()}) is not None
    assert parse_hierarchy_room("!other:x.test", {"room": remote_summary()}) is None
    assert (
        parse_hierarchy_room(REMOTE_ROOM, {"room": remote_summary(num_joined_members="3")}) is None
    )
    assert parse_hierarchy_room(REMOTE_ROOM, {"room": remote_summary(name=7)}) is None
    assert parse_hierarchy_room(REMOTE_ROOM, []) is None


async def test_userinfo_is_served_on_the_federation_listener(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    listeners = [
        {"type": "client", "bind": "127.0.0.1", "port": 0},
        {"type": "federation", "bind": "127.0.0.1", "port": 0},
    ]
    runners = await start(
        make_config(tmp_path, migrated_db_dsn, listeners), pool, generate_signing_key()
    )
    url = f"http://127.0.0.1:{bound_port(runners[1])}{USERINFO_PATH}"
    tokens = OpenIdTokens(pool, "veche.test")
    issued = await tokens.request_token("@someone:veche.test", "@someone:veche.test")
    try:
        async with aiohttp.ClientSession() as http:
            params = {"access_token": issued["access_token"]}
            async with http.get(url, params=params) as reply:
                assert (reply.status, await reply.json()) == (200, {"sub": "@someone:veche.test"})
            async with http.get(url, params={"access_token": "nope"}) as reply:
                assert reply.status == 401
    finally:
        await stop_listeners(runners)
