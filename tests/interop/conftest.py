"""Fixtures of the Synapse interop tests: one real Synapse (tests/interop/synapse_peer.py) and
one real Veche in this process, named `localhost:<federation port>` with TLS on its federation
listener, for the whole session; both skipped without Synapse unless VECHE_INTEROP=1.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import aiohttp
import pytest
from aiohttp import web

from federation.signing import generate_signing_key
from homeserver.app import build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage import database
from homeserver.storage.migrations import latest_version, load_migrations
from tests.conftest import _scratch_database, dsn_for_database
from tests.interop.support import Synapse, Veche
from tests.interop.synapse_peer import SynapsePeer, SynapseUnavailable, interop_required
from tests.remote.support import make_certificate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

        federation_index = next(
            i for i, (spec, _) in enumerate(apps) if "federation" in spec.types
        )
        federation_runner, federation_spec = runners[federation_index], apps[federation_index][0]

        async def set_federation_reachable(reachable: bool) -> None:
            if not reachable:
                for site in list(federation_runner.sites):
                    await site.stop()
                # Kept-alive connections too, or Synapse would go on using them.
                if federation_runner.server is not None:
                    await federation_runner.server.shutdown(0.5)
                return
            site = web.TCPSite(
                federation_runner,
                "127.0.0.1",
                port,
                ssl_context=federation_spec.ssl_context(),
                reuse_address=True,
            )
            await site.start()

        yield Veche(
            name,
            f"http://127.0.0.1:{client_port}",
            http,
            register_user,
            set_federation_reachable,
        )


