"""The sender as homeserver/app.py wires it: started with the process, fed by the one event
pipeline, its backoff reset by authenticated inbound requests, closed at shutdown; and the
notary endpoint served on the federation listener."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from yarl import URL

from federation.room_versions import V11
from federation.signing import generate_signing_key
from homeserver.app import Dependencies, build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage.migrations import latest_version, load_migrations
from tests.federation_out.peer import FakePeer, running_peer, wait_until
from tests.remote.support import LoopbackCertificate, make_certificate
from tests.services.pipeline_harness import ALICE, SERVER, initial_events

OUR_KEY = generate_signing_key("app")


@pytest.fixture
def cert(tmp_path: Path) -> LoopbackCertificate:
    return make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])


class App:
    def __init__(self, deps: Dependencies, federation_url: str, http: aiohttp.ClientSession):
        self.deps = deps
        self.federation_url = federation_url
        self.http = http


@pytest.fixture
async def app(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[App]:
    config = parse_config(
        {
            "server_name": SERVER,
            "data_dir": str(tmp_path),
            "database": {"dsn": migrated_db_dsn},
            "listeners": [
                {"type": "client", "bind": "127.0.0.1", "port": 0},
                {"type": "federation", "bind": "127.0.0.1", "port": 0},
            ],
            "federation": {"verify_tls": False, "ip_range_allowlist": ["127.0.0.0/8"]},
            "rate_limits": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    deps = await build_dependencies(config, pool, OUR_KEY, latest_version(load_migrations()))
    runners = await start_listeners(build_listener_apps(deps), config)
    port = runners[1].addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield App(deps, f"http://127.0.0.1:{port}", http)
    finally:
        await stop_listeners(runners)
        await deps.close()


async def _room_with(app: App, peer: FakePeer) -> str:
    """A room of alice's that the peer's user joined over federation."""
    engine = app.deps.engine
    events = await engine.pipeline.create_room_events(V11, initial_events(ALICE))
    room_id = events[0].room_id
    state_before = dict(await engine.state.get_current_state_ids(room_id))
    join = peer.join_event(room_id, events[-1], [events[0], events[2], events[3]])
    await engine.pipeline.persist_remote_event(join, state_before)
    return room_id


async def test_the_app_sends_local_events_to_peers_in_the_room(
    app: App, cert: LoopbackCertificate
) -> None:
    async with running_peer(cert, OUR_KEY) as peer:
        room_id = await _room_with(app, peer)
        message = await app.deps.engine.pipeline.create_local_event(
            room_id, "m.room.message", ALICE, {"msgtype": "m.text", "body": "over the wire"}
        )
        await wait_until(lambda: message.event_id in peer.received_event_ids())


async def test_a_signed_request_from_a_peer_ends_its_backoff(
    app: App, cert: LoopbackCertificate
) -> None:
    sender = app.deps.federation_sender
    assert sender is not None
    async with running_peer(cert, OUR_KEY) as peer:
        room_id = await _room_with(app, peer)
        peer.fail_next = 1  # the app's backoff starts at about 5 s
        message = await app.deps.engine.pipeline.create_local_event(
            room_id, "m.room.message", ALICE, {"msgtype": "m.text", "body": "waiting"}
        )
        await wait_until(lambda: sender.is_backing_off(peer.server_name))

        uri = f"/_matrix/federation/v1/query/profile?user_id=%40alice%3A{SERVER}"
        headers = {"Authorization": peer.authorization("GET", uri, SERVER)}
        url = URL(app.federation_url + uri, encoded=True)  # sent exactly as signed
        async with app.http.get(url, headers=headers) as response:
            assert response.status != 401, await response.text()

        await wait_until(lambda: message.event_id in peer.received_event_ids(), timeout_s=3)
        assert not sender.is_backing_off(peer.server_name)


async def test_the_federation_listener_answers_key_queries_as_a_notary(app: App) -> None:
    async with app.http.get(f"{app.federation_url}/_matrix/key/v2/query/{SERVER}") as response:
        assert response.status == 200
        body: Any = await response.json()
    [keys] = body["server_keys"]
    assert keys["server_name"] == SERVER
    assert f"ed25519:{OUR_KEY.version}" in keys["verify_keys"]
