"""Veche ↔ Synapse federation on loopback, both directions (issue 5, "Interop with Synapse").

A real Synapse (tests/interop/synapse_peer.py) and a real Veche (in this process, TLS on its
federation listener, named `localhost:<federation port>`) share rooms: a Veche user joins a
Synapse room by ID and by alias, a Synapse user joins a Veche room, an invited Synapse user
accepts, members are kicked and banned; messages and state changes flow both ways and both
servers end with the same room state.

Without VECHE_INTEROP=1 the tests are skipped when Synapse cannot be installed or started;
with it (as in CI, `make interop`) that is an error.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from federation.signing import generate_signing_key
from homeserver.app import build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage import database
from homeserver.storage.migrations import latest_version, load_migrations
from tests.conftest import _scratch_database, dsn_for_database
from tests.interop.synapse_peer import SynapsePeer, SynapseUnavailable, interop_required
from tests.remote.support import make_certificate

pytestmark = pytest.mark.interop

TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class Client:
    """A Matrix client of one server, either Veche or Synapse."""

    http: aiohttp.ClientSession
    base_url: str
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method,
            self.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            return response.status, await response.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = await self.call(method, path, body)
        assert status == 200, (method, path, status, reply)
        return reply


@dataclass
class Veche:
    name: str
    client_url: str
    http: aiohttp.ClientSession
    register_user: Callable[[str], Awaitable[tuple[str, str]]]

    async def user(self, localpart: str) -> Client:
        user_id, token = await self.register_user(localpart)
        return Client(self.http, self.client_url, user_id, token)


@dataclass
class Synapse:
    peer: SynapsePeer
    http: aiohttp.ClientSession

    @property
    def name(self) -> str:
        return self.peer.server_name

    async def user(self, localpart: str) -> Client:
        user_id, token = await self.peer.register(self.http, localpart)
        return Client(self.http, self.peer.client_url, user_id, token)


@pytest.fixture(scope="session")
def synapse_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapsePeer]:
    peer = SynapsePeer(tmp_path_factory.mktemp("synapse"), free_port(), free_port())
    try:
        peer.start()
    except SynapseUnavailable as exc:
        if interop_required():
            pytest.fail(f"VECHE_INTEROP=1 but Synapse is unavailable: {exc}")
        pytest.skip(f"Synapse is not installable here and VECHE_INTEROP is not 1: {exc}")
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
async def synapse(synapse_peer: SynapsePeer, http: aiohttp.ClientSession) -> Synapse:
    return Synapse(synapse_peer, http)


@pytest.fixture(scope="session")
async def veche(
    tmp_path_factory: pytest.TempPathFactory,
    pg_admin_dsn: str,
    _migrated_template: str,
    http: aiohttp.ClientSession,
) -> AsyncIterator[Veche]:
    """Veche as `localhost:<port>`, TLS on its federation listener, loopback peers allowed."""
    tmp = tmp_path_factory.mktemp("veche")
    cert = make_certificate(tmp / "tls", ["localhost"], ["127.0.0.1"])
    port = free_port()
    name = f"localhost:{port}"
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            _scratch_database(pg_admin_dsn, template=_migrated_template)
        )
        dsn = dsn_for_database(pg_admin_dsn, db)
        config = parse_config(
            {
                "server_name": name,
                "data_dir": str(tmp),
                "signing_key_path": str(tmp / "signing.key"),
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
                "registration": {"enabled": True},
                "federation": {
                    "verify_tls": False,
                    "ip_range_allowlist": ["127.0.0.0/8", "::1/128"],
                },
                "rate_limits": {"enabled": False},
            },
            base_dir=tmp,
        )
        pool = await database.create_pool(dsn, min_connections=1, max_connections=5)
        stack.push_async_callback(pool.close)
        deps = await build_dependencies(
            config, pool, generate_signing_key("k1"), latest_version(load_migrations())
        )
        stack.push_async_callback(deps.close)
        apps = build_listener_apps(deps)
        runners = await start_listeners(apps, deps.config)
        stack.push_async_callback(stop_listeners, runners)
        client_index = next(i for i, (spec, _) in enumerate(apps) if "client" in spec.types)
        client_port = int(runners[client_index].addresses[0][1])

        async def register_user(localpart: str) -> tuple[str, str]:
            user_id, session = await deps.account_services.accounts.register(
                f"@{localpart}:{name}", "a long enough password"
            )
            assert session is not None
            return user_id, session.access_token

        yield Veche(name, f"http://127.0.0.1:{client_port}", http, register_user)


# --- helpers -------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, peer: SynapsePeer | None = None
) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            log = f"\nSynapse log:\n{peer.log_tail()}" if peer else ""
            raise AssertionError(f"timed out waiting for {what}{log}")
        await asyncio.sleep(0.2)


async def create_room(user: Client, **body: Any) -> str:
    reply = await user.ok("POST", "/_matrix/client/v3/createRoom", body)
    return str(reply["room_id"])


async def send_text(user: Client, room_id: str, body: str) -> str:
    txn = f"t{asyncio.get_running_loop().time()}".replace(".", "")
    reply = await user.ok(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": body},
    )
    return str(reply["event_id"])


async def set_state(user: Client, room_id: str, event_type: str, content: dict[str, Any]) -> str:
    reply = await user.ok(
        "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}/", content
    )
    return str(reply["event_id"])


async def bodies_seen(user: Client, room_id: str) -> list[str]:
    status, page = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=100"
    )
    if status != 200:
        return []
    return [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]


async def state_content(user: Client, room_id: str, event_type: str, state_key: str = "") -> Any:
    status, content = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}"
    )
    return content if status == 200 else None


async def state_ids(user: Client, room_id: str) -> set[tuple[str, str, str]]:
    events = await user.ok("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    return {(e["type"], e["state_key"], e["event_id"]) for e in events}


async def membership_of(viewer: Client, room_id: str, user_id: str) -> str | None:
    content = await state_content(viewer, room_id, "m.room.member", user_id)
    return None if content is None else content.get("membership")


async def wait_membership(
    viewer: Client, room_id: str, user_id: str, membership: str, peer: SynapsePeer
) -> None:
    async def check() -> bool:
        return await membership_of(viewer, room_id, user_id) == membership

    await eventually(check, f"{user_id} {membership} as seen by {viewer.user_id}", peer)


async def wait_message(viewer: Client, room_id: str, body: str, peer: SynapsePeer) -> None:
    async def check() -> bool:
        return body in await bodies_seen(viewer, room_id)

    await eventually(check, f"{body!r} seen by {viewer.user_id}", peer)


async def wait_state(
    viewer: Client,
    room_id: str,
    event_type: str,
    key: str,
    value: str,
    peer: SynapsePeer,
) -> None:
    async def check() -> bool:
        content = await state_content(viewer, room_id, event_type)
        return content is not None and content.get(key) == value

    await eventually(check, f"{event_type} {key}={value!r} seen by {viewer.user_id}", peer)


async def grant_power(admin: Client, room_id: str, user_id: str, level: int) -> None:
    levels = await state_content(admin, room_id, "m.room.power_levels")
    levels.setdefault("users", {})[user_id] = level
    await set_state(admin, room_id, "m.room.power_levels", levels)


async def wait_power(
    viewer: Client, room_id: str, user_id: str, level: int, peer: SynapsePeer
) -> None:
    async def check() -> bool:
        levels = await state_content(viewer, room_id, "m.room.power_levels")
        return levels is not None and levels.get("users", {}).get(user_id) == level

    await eventually(check, f"power {level} for {user_id} seen by {viewer.user_id}", peer)


async def wait_same_state(a: Client, b: Client, room_id: str, peer: SynapsePeer) -> None:
    async def check() -> bool:
        return await state_ids(a, room_id) == await state_ids(b, room_id)

    try:
        await eventually(check, "identical room state on both servers", peer)
    except AssertionError as exc:
        seen_a, seen_b = await state_ids(a, room_id), await state_ids(b, room_id)
        raise AssertionError(
            f"state differs: only {a.user_id}: {seen_a - seen_b};"
            f" only {b.user_id}: {seen_b - seen_a}"
        ) from exc


# --- a Veche user in a Synapse room ---------------------------------------------------------


async def test_a_veche_user_joins_a_synapse_room_by_id_and_they_talk(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice1"), await veche.user("bob1")
    room_id = await create_room(s_alice, preset="public_chat", name="Synapse side")

    joined = await v_bob.ok(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(synapse.name)}", {}
    )
    assert joined["room_id"] == room_id
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)
    assert (await v_bob.ok("GET", "/_matrix/client/v3/joined_rooms"))["joined_rooms"] == [room_id]

    await send_text(s_alice, room_id, "hello from Synapse")
    await wait_message(v_bob, room_id, "hello from Synapse", synapse.peer)
    await send_text(v_bob, room_id, "hello from Veche")
    await wait_message(s_alice, room_id, "hello from Veche", synapse.peer)

    await set_state(s_alice, room_id, "m.room.name", {"name": "Renamed on Synapse"})
    await wait_state(v_bob, room_id, "m.room.name", "name", "Renamed on Synapse", synapse.peer)
    await grant_power(s_alice, room_id, v_bob.user_id, 50)
    await wait_power(v_bob, room_id, v_bob.user_id, 50, synapse.peer)
    await set_state(v_bob, room_id, "m.room.topic", {"topic": "set on Veche"})
    await wait_state(s_alice, room_id, "m.room.topic", "topic", "set on Veche", synapse.peer)

    await wait_same_state(s_alice, v_bob, room_id, synapse.peer)

    await v_bob.ok("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    await wait_membership(s_alice, room_id, v_bob.user_id, "leave", synapse.peer)


async def test_a_veche_user_joins_a_synapse_room_by_alias(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice2"), await veche.user("bob2")
    room_id = await create_room(s_alice, preset="public_chat", room_alias_name="interop")
    alias = f"#interop:{synapse.name}"

    joined = await v_bob.ok("POST", f"/_matrix/client/v3/join/{q(alias)}", {})
    assert joined["room_id"] == room_id
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)

    await send_text(v_bob, room_id, "joined by alias")
    await wait_message(s_alice, room_id, "joined by alias", synapse.peer)
    await wait_same_state(s_alice, v_bob, room_id, synapse.peer)


# --- Synapse users in a Veche room ----------------------------------------------------------


async def test_synapse_users_join_a_veche_room_talk_and_are_kicked_and_banned(
    synapse: Synapse, veche: Veche
) -> None:
    v_alice = await veche.user("alice3")
    s_bob, s_carol = await synapse.user("bob3"), await synapse.user("carol3")
    room_id = await create_room(v_alice, preset="public_chat", name="Veche side")

    joined = await s_bob.ok(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(veche.name)}", {}
    )
    assert joined["room_id"] == room_id
    await wait_membership(v_alice, room_id, s_bob.user_id, "join", synapse.peer)

    await send_text(v_alice, room_id, "hello from Veche")
    await wait_message(s_bob, room_id, "hello from Veche", synapse.peer)
    await send_text(s_bob, room_id, "hello from Synapse")
    await wait_message(v_alice, room_id, "hello from Synapse", synapse.peer)

    await set_state(v_alice, room_id, "m.room.name", {"name": "Renamed on Veche"})
    await wait_state(s_bob, room_id, "m.room.name", "name", "Renamed on Veche", synapse.peer)
    await grant_power(v_alice, room_id, s_bob.user_id, 50)
    await wait_power(s_bob, room_id, s_bob.user_id, 50, synapse.peer)
    await set_state(s_bob, room_id, "m.room.topic", {"topic": "set on Synapse"})
    await wait_state(v_alice, room_id, "m.room.topic", "topic", "set on Synapse", synapse.peer)

    # An invite from Veche to a second Synapse user, accepted.
    await v_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": s_carol.user_id}
    )

    since = ""  # Synapse caches /sync answers per request: follow next_batch

    async def carol_invited() -> bool:
        nonlocal since
        sync = await s_carol.ok("GET", f"/_matrix/client/v3/sync?timeout=500{since}")
        since = f"&since={q(sync['next_batch'])}"
        return room_id in sync.get("rooms", {}).get("invite", {})

    await eventually(carol_invited, "the invite in carol's /sync on Synapse", synapse.peer)
    await s_carol.ok("POST", f"/_matrix/client/v3/join/{q(room_id)}", {})
    await wait_membership(v_alice, room_id, s_carol.user_id, "join", synapse.peer)
    await send_text(s_carol, room_id, "carol is here")
    await wait_message(v_alice, room_id, "carol is here", synapse.peer)

    # Membership changes made on Veche reach Synapse.
    await v_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/kick", {"user_id": s_carol.user_id}
    )
    await wait_membership(s_bob, room_id, s_carol.user_id, "leave", synapse.peer)
    await v_alice.ok(
        "POST",
        f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
        {"user_id": s_carol.user_id, "reason": "interop"},
    )
    await wait_membership(s_bob, room_id, s_carol.user_id, "ban", synapse.peer)

    await wait_same_state(v_alice, s_bob, room_id, synapse.peer)


async def test_a_synapse_user_leaves_a_veche_room(synapse: Synapse, veche: Veche) -> None:
    v_alice, s_bob = await veche.user("alice4"), await synapse.user("bob4")
    room_id = await create_room(v_alice, preset="public_chat")
    await s_bob.ok(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(veche.name)}", {}
    )
    await wait_membership(v_alice, room_id, s_bob.user_id, "join", synapse.peer)

    await s_bob.ok("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    await wait_membership(v_alice, room_id, s_bob.user_id, "leave", synapse.peer)


# --- membership driven from Synapse, aliases of Veche, other room versions -------------------


async def test_a_synapse_user_invites_kicks_and_bans_a_veche_user(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice = await synapse.user("alice5")
    v_bob, v_dan = await veche.user("bob5"), await veche.user("dan5")
    room_id = await create_room(s_alice, preset="private_chat", name="Invite only")

    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": v_bob.user_id}
    )

    async def bob_invited() -> bool:
        sync = await v_bob.ok("GET", "/_matrix/client/v3/sync?timeout=0")
        return room_id in sync.get("rooms", {}).get("invite", {})

    await eventually(bob_invited, "the invite in bob's /sync on Veche", synapse.peer)
    await v_bob.ok("POST", f"/_matrix/client/v3/join/{q(room_id)}", {})
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)

    # A second invitee on Veche declines.
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": v_dan.user_id}
    )
    await wait_membership(v_bob, room_id, v_dan.user_id, "invite", synapse.peer)
    await v_dan.ok("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    await wait_membership(s_alice, room_id, v_dan.user_id, "leave", synapse.peer)

    await send_text(s_alice, room_id, "about to kick")
    await wait_message(v_bob, room_id, "about to kick", synapse.peer)
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/kick", {"user_id": v_bob.user_id}
    )

    async def bob_left() -> bool:
        include_leave = q('{"room": {"include_leave": true}}')
        sync = await v_bob.ok("GET", f"/_matrix/client/v3/sync?timeout=0&filter={include_leave}")
        return room_id in sync.get("rooms", {}).get("leave", {})

    await eventually(bob_left, "the kick in bob's /sync on Veche", synapse.peer)
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/ban", {"user_id": v_bob.user_id}
    )
    await wait_membership(s_alice, room_id, v_bob.user_id, "ban", synapse.peer)
    status, _ = await v_bob.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(synapse.name)}", {}
    )
    assert status == 403


async def test_a_synapse_user_joins_a_veche_room_by_alias_and_sees_it_in_sync(
    synapse: Synapse, veche: Veche
) -> None:
    v_alice, s_bob = await veche.user("alice6"), await synapse.user("bob6")
    room_id = await create_room(v_alice, preset="public_chat", room_alias_name="vecheroom")

    joined = await s_bob.ok("POST", f"/_matrix/client/v3/join/{q('#vecheroom:' + veche.name)}", {})
    assert joined["room_id"] == room_id
    await send_text(v_alice, room_id, "welcome")

    # Synapse caches a /sync answer per request for a while (sync_response_cache_duration):
    # follow next_batch as a client does.
    since = ""
    bodies: list[str] = []

    async def in_sync() -> bool:
        nonlocal since
        sync = await s_bob.ok("GET", f"/_matrix/client/v3/sync?timeout=500{since}")
        since = f"&since={q(sync['next_batch'])}"
        timeline = sync.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        bodies.extend(e["content"].get("body") for e in timeline.get("events", []))
        return "welcome" in bodies

    await eventually(in_sync, "Veche's message in bob's /sync on Synapse", synapse.peer)
    await wait_same_state(v_alice, s_bob, room_id, synapse.peer)


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_rooms_of_other_versions_federate_both_ways(
    synapse: Synapse, veche: Veche, room_version: str
) -> None:
    s_alice, v_bob = await synapse.user(f"alice7v{room_version}"), await veche.user(
        f"bob7v{room_version}"
    )
    s_room = await create_room(s_alice, preset="public_chat", room_version=room_version)
    await v_bob.ok("POST", f"/_matrix/client/v3/join/{q(s_room)}?server_name={q(synapse.name)}", {})
    await send_text(v_bob, s_room, f"v{room_version} from Veche")
    await wait_message(s_alice, s_room, f"v{room_version} from Veche", synapse.peer)

    v_room = await create_room(v_bob, preset="public_chat", room_version=room_version)
    await s_alice.ok("POST", f"/_matrix/client/v3/join/{q(v_room)}?server_name={q(veche.name)}", {})
    await send_text(s_alice, v_room, f"v{room_version} from Synapse")
    await wait_message(v_bob, v_room, f"v{room_version} from Synapse", synapse.peer)
    await wait_same_state(v_bob, s_alice, v_room, synapse.peer)
    await wait_same_state(s_alice, v_bob, s_room, synapse.peer)
