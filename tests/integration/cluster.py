"""N real Veche servers federating over TLS on loopback, each of which can be stopped and
started again on the same database, port and signing key (issue 5: "a server down for a while
then caught up").

`cluster(...)` yields a `Cluster`; its `servers` are the `Server` objects of
tests/integration/test_two_servers.py, so `Server.register` and `User.call` work unchanged and
keep working across a restart (the restarted server updates the same object).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from federation.signing import SigningKey, generate_signing_key
from homeserver.app import build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage import database
from homeserver.storage.migrations import latest_version, load_migrations
from tests.conftest import _scratch_database, dsn_for_database
from tests.integration.test_two_servers import Server
from tests.remote.support import LoopbackCertificate, make_certificate

# Failed transactions are retried after 0.2 s, 0.4 s … at most 1 s: catch-up takes moments.
TEST_RETRY_INITIAL_S = 0.2
TEST_RETRY_MAX_S = 1.0

def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# Extra `federation:` settings for server number i, given every server's name.
FederationSettings = Callable[[int, list[str]], Mapping[str, Any]]


@dataclass
class _Node:
    """What one server needs to start again as the same server."""

    directory: Path
    dsn: str
    host: str
    port: int
    signing_key: SigningKey
    federation: Mapping[str, Any]
    server: Server | None = None
    pool: asyncpg.Pool | None = None
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class Cluster:
    def __init__(self, nodes: list[_Node], cert: LoopbackCertificate, http: aiohttp.ClientSession):
        self._nodes = nodes
        self._cert = cert
        self._http = http

    @property
    def servers(self) -> list[Server]:
        return [self._server(node) for node in self._nodes]

    def _server(self, node: _Node) -> Server:
        assert node.server is not None
        return node.server

    def _node(self, server: Server) -> _Node:
        return next(node for node in self._nodes if node.server is server)

    def is_running(self, server: Server) -> bool:
        return self._node(server).pool is not None

    async def start_all(self) -> None:
        for node in self._nodes:
            await self._start(node)

    async def stop(self, server: Server) -> None:
        """Shut the server down: listeners closed, its services and database pool too."""
        node = self._node(server)
        if node.pool is None:
            return
        await stop_listeners(node.runners)
        node.runners = []
        await self._server(node).deps.close()
        await node.pool.close()
        node.pool = None

    async def restart(self, server: Server) -> None:
        """Start a stopped server again: same database, port, signing key and name."""
        await self._start(self._node(server))

    async def close(self) -> None:
        for node in reversed(self._nodes):
            if node.server is not None:
                await self.stop(node.server)

    async def _start(self, node: _Node) -> None:
        config = parse_config(
            {
                "server_name": node.name,
                "data_dir": str(node.directory),
                "signing_key_path": str(node.directory / "signing.key"),
                "database": {"dsn": node.dsn, "min_connections": 1, "max_connections": 4},
                "listeners": [
                    {"type": "client", "bind": "127.0.0.1", "port": 0},
                    {
                        "type": "federation",
                        "bind": node.host,
                        "port": node.port,
                        "tls_certificate": str(self._cert.cert_path),
                        "tls_private_key": str(self._cert.key_path),
                    },
                ],
                "federation": {
                    "verify_tls": False,
                    "ip_range_allowlist": ["127.0.0.0/8"],
                    "retry_initial": TEST_RETRY_INITIAL_S,
                    "retry_max": TEST_RETRY_MAX_S,
                    **node.federation,
                },
                "rate_limits": {"enabled": False},
            },
            base_dir=node.directory,
        )
        pool = await database.create_pool(node.dsn, min_connections=1, max_connections=5)
        deps = await build_dependencies(
            config, pool, node.signing_key, latest_version(load_migrations())
        )
        apps = build_listener_apps(deps)
        runners = await start_listeners(apps, deps.config)
        client_index = next(i for i, (spec, _) in enumerate(apps) if "client" in spec.types)
        client_url = f"http://127.0.0.1:{int(runners[client_index].addresses[0][1])}"
        node.pool, node.runners = pool, runners
        if node.server is None:
            node.server = Server(deps, node.name, client_url, self._http)
        else:  # the same object, so users registered before the restart keep working
            node.server.deps, node.server.client_url = deps, client_url


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    pg_admin_dsn: str,
    template: str,
    count: int,
    federation: FederationSettings | None = None,
    hosts: Sequence[str] | None = None,
) -> AsyncIterator[Cluster]:
    """`count` running servers, each with its own scratch database and federation port.

    `hosts`: each server's loopback address (and so its name's host part); 127.0.0.1 for all
    by default. Room ACLs ignore ports, so tests of them give servers distinct hosts.
    """
    hosts = list(hosts) if hosts is not None else ["127.0.0.1"] * count
    assert len(hosts) == count
    cert = make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        ports = [free_port(host) for host in hosts]
        names = [f"{host}:{port}" for host, port in zip(hosts, ports, strict=True)]
        nodes = []
        for index, port in enumerate(ports):
            db = await stack.enter_async_context(_scratch_database(pg_admin_dsn, template=template))
            directory = tmp_path / f"server{index}"
            directory.mkdir()
            nodes.append(
                _Node(
                    directory=directory,
                    dsn=dsn_for_database(pg_admin_dsn, db),
                    host=hosts[index],
                    port=port,
                    signing_key=generate_signing_key("k1"),
                    federation=dict(federation(index, names)) if federation else {},
                )
            )
        running = Cluster(nodes, cert, http)
        stack.push_async_callback(running.close)
        await running.start_all()
        yield running


@dataclass
class ThreeServers:
    a: Server
    b: Server
    c: Server
    cluster: Cluster


@pytest.fixture
async def three_servers(
    tmp_path: Path, pg_admin_dsn: str, _migrated_template: str
) -> AsyncIterator[ThreeServers]:
    async with cluster(tmp_path, pg_admin_dsn, _migrated_template, 3) as running:
        a, b, c = running.servers
        yield ThreeServers(a, b, c, running)
