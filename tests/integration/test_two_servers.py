"""Two real Veche servers federating over TLS on loopback (issue 5: the client API across
servers): a user of B joins a room of A through make_join/send_join, and A invites a user of B.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from federation.signing import generate_signing_key
from homeserver.app import Dependencies, build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage import database
from homeserver.storage.migrations import latest_version, load_migrations
from tests.conftest import _scratch_database, dsn_for_database
from tests.remote.support import LoopbackCertificate, make_certificate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    deps: Dependencies
    name: str
    client_url: str
    http: aiohttp.ClientSession

    async def register(self, localpart: str) -> User:
        user_id, session = await self.deps.account_services.accounts.register(
            f"@{localpart}:{self.name}", "a long enough password"
        )
        assert session is not None
        return User(self, user_id, session.access_token)


@dataclass
class User:
    server: Server
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.server.http.request(
            method,
            self.server.client_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            return response.status, await response.json()


@asynccontextmanager
async def running_server(
    tmp_path: Path, dsn: str, cert: LoopbackCertificate, http: aiohttp.ClientSession
) -> AsyncIterator[Server]:
    port = free_port()
    name = f"127.0.0.1:{port}"
    config = parse_config(
        {
            "server_name": name,
            "data_dir": str(tmp_path),
            "signing_key_path": str(tmp_path / "signing.key"),
            "database": {"dsn": dsn, "min_connections": 1, "max_connections": 4},
            "listeners": [
                {"type": "client", "bind": "127.0.0.1", "port": 0},
                {
                    "type": "federation",
                    "bind": "127.0.0.1",
                    "port": port,
                    "tls_certificate": str(cert.cert_path),
                    "tls_private_key": str(cert.key_path),
                },
            ],
            "federation": {"verify_tls": False, "ip_range_allowlist": ["127.0.0.0/8"]},
            "rate_limits": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    pool = await database.create_pool(dsn, min_connections=1, max_connections=5)
    deps = await build_dependencies(
        config, pool, generate_signing_key("k1"), latest_version(load_migrations())
    )
    apps = build_listener_apps(deps)
    runners = await start_listeners(apps, deps.config)
    client_index = next(i for i, (spec, _) in enumerate(apps) if "client" in spec.types)
    client_port = int(runners[client_index].addresses[0][1])
    try:
        yield Server(deps, name, f"http://127.0.0.1:{client_port}", http)
    finally:
        await stop_listeners(runners)
        await deps.close()
        await pool.close()


@dataclass
class Servers:
    a: Server
    b: Server


@pytest.fixture
async def servers(
    tmp_path: Path, pg_admin_dsn: str, _migrated_template: str
) -> AsyncIterator[Servers]:
    cert = make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        found = []
        for label in ("a", "b"):
            db = await stack.enter_async_context(
                _scratch_database(pg_admin_dsn, template=_migrated_template)
            )
            (tmp_path / label).mkdir()
            found.append(
                await stack.enter_async_context(
                    running_server(
                        tmp_path / label, dsn_for_database(pg_admin_dsn, db), cert, http
                    )
                )
            )
        yield Servers(found[0], found[1])


def q(value: str) -> str:
    return quote(value, safe="")


async def state_of(user: User, room_id: str) -> dict[tuple[str, str], str]:
    status, events = await user.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    assert status == 200, events
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


async def bodies_seen(user: User, room_id: str) -> list[str]:
    status, page = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=50"
    )
    assert status == 200, page
    return [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]


async def eventually(check: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def send_text(user: User, room_id: str, txn: str, body: str) -> None:
    status, reply = await user.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": body},
    )
    assert status == 200, reply


async def test_a_user_joins_a_room_on_another_server_and_they_talk(servers: Servers) -> None:
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    status, created = await alice.call(
        "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"}
    )
    assert status == 200, created
    room_id = created["room_id"]

    status, joined = await bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(servers.a.name)}", {}
    )
    assert status == 200, joined
    assert joined["room_id"] == room_id

    # B now holds the same room state as A, bob's join included.
    state_b = dict(await servers.b.deps.engine.state.get_current_state_ids(room_id))
    assert state_b == await state_of(alice, room_id)
    assert ("m.room.member", bob.user_id) in state_b
    status, rooms = await bob.call("GET", "/_matrix/client/v3/joined_rooms")
    assert rooms["joined_rooms"] == [room_id]

    await send_text(alice, room_id, "t1", "hello from A")
    await eventually(lambda: _sees(bob, room_id, "hello from A"))
    await send_text(bob, room_id, "t2", "hello from B")
    await eventually(lambda: _sees(alice, room_id, "hello from B"))


async def _sees(user: User, room_id: str, body: str) -> bool:
    return body in await bodies_seen(user, room_id)


async def test_the_joining_server_serves_the_room_state_it_received_as_outliers(
    servers: Servers,
) -> None:
    """send_join's state and auth chain are stored on B as outliers: they must still be
    readable as room state there, and never show up in a timeline."""
    alice, bob = await servers.a.register("alice"), await servers.b.register("bob")
    status, created = await alice.call(
        "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat", "name": "Lobby"}
    )
    assert status == 200, created
    room_id = created["room_id"]
    await send_text(alice, room_id, "t1", "before bob")
    status, joined = await bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(servers.a.name)}", {}
    )
    assert status == 200, joined

    assert await state_of(bob, room_id) == await state_of(alice, room_id)
    status, members = await bob.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members"
    )
    assert status == 200, members
    assert set(members["joined"]) == {alice.user_id, bob.user_id}
    status, listed = await bob.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/members")
    assert status == 200, listed
    assert {e["state_key"] for e in listed["chunk"]} == {alice.user_id, bob.user_id}

    status, sync = await bob.call("GET", "/_matrix/client/v3/sync")
    assert status == 200, sync
    room = sync["rooms"]["join"][room_id]
    seen = {
        (e["type"], e["state_key"])
        for e in room["state"]["events"] + room["timeline"]["events"]
        if "state_key" in e
    }
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id)} <= seen
    assert room["summary"]["m.joined_member_count"] == 2

    outliers = await _outlier_ids(servers.b, room_id)
    assert outliers, "send_join's state should have been stored as outliers on B"
    status, page = await bob.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=50"
    )
    assert status == 200, page
    assert page["chunk"], page
    assert not {e["event_id"] for e in room["timeline"]["events"]} & outliers
    # /messages backfilled the history before bob's join, de-outliering the events it went
    # through (S2S "Backfilling"): every event it shows is a timeline event by now.
    assert not {e["event_id"] for e in page["chunk"]} & await _outlier_ids(servers.b, room_id)

    # State at an event: /context, and lazy-loaded members in /messages (alice's member event
    # on B is an outlier from send_join).
    newest = page["chunk"][0]["event_id"]  # bob's join: the first timeline event on B
    status, context = await bob.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/context/{q(newest)}"
    )
    assert status == 200, context
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in context["state"]}
    await send_text(alice, room_id, "t2", "after bob")
    await eventually(lambda: _sees(bob, room_id, "after bob"))
    lazy = q('{"lazy_load_members": true}')
    status, page = await bob.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=1&filter={lazy}"
    )
    assert status == 200, page
    assert [e["content"].get("body") for e in page["chunk"]] == ["after bob"]
    assert [e["state_key"] for e in page["state"]] == [alice.user_id]


async def _outlier_ids(server: Server, room_id: str) -> set[str]:
    rows = await server.deps.pool.fetch(
        "SELECT event_id FROM events WHERE room_id = $1 AND outlier", room_id
    )
    return {row["event_id"] for row in rows}


async def test_a_user_of_another_server_is_invited_and_sees_it_in_sync(servers: Servers) -> None:
    alice, carol = await servers.a.register("alice"), await servers.b.register("carol")
    status, created = await alice.call(
        "POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat", "name": "Plans"}
    )
    assert status == 200, created
    room_id = created["room_id"]

    status, reply = await alice.call(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}
    )
    assert status == 200, reply
    assert (await state_of(alice, room_id)).get(("m.room.member", carol.user_id))

    status, sync = await carol.call("GET", "/_matrix/client/v3/sync")
    assert status == 200, sync
    invite = sync["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": ""} in [
        {"type": e["type"], "state_key": e["state_key"]} for e in invite
    ]

    # carol accepts: a join through A, by room ID with A's name from the invite.
    status, joined = await carol.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(servers.a.name)}", {}
    )
    assert status == 200, joined
    assert ("m.room.member", carol.user_id) in await state_of(carol, room_id)


async def test_joining_an_unknown_room_on_another_server_fails_cleanly(servers: Servers) -> None:
    bob = await servers.b.register("bob")
    status, reply = await bob.call(
        "POST",
        f"/_matrix/client/v3/join/{q('!nope:' + servers.a.name)}",
        {},
    )
    assert status == 404, reply
    assert reply["errcode"] == "M_NOT_FOUND"


async def test_a_user_of_another_server_rejects_an_invite(servers: Servers) -> None:
    alice, carol = await servers.a.register("alice"), await servers.b.register("carol")
    status, created = await alice.call(
        "POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"}
    )
    room_id = created["room_id"]
    status, reply = await alice.call(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}
    )
    assert status == 200, reply

    status, reply = await carol.call("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    assert status == 200, reply

    member = (await state_of(alice, room_id))[("m.room.member", carol.user_id)]
    status, event = await alice.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(member)}"
    )
    assert event["content"]["membership"] == "leave"
    status, sync = await carol.call("GET", "/_matrix/client/v3/sync")
    assert room_id not in sync["rooms"].get("invite", {})
