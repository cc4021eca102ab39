"""Fixtures for homeserver/remote tests: a world of TLS servers and a DNS server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from federation.signing import generate_signing_key
from tests.remote.fakes import FakeHomeserver, World, free_port
from tests.remote.support import fake_dns_server, make_certificate, serve


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    # The certificate covers srv.test (a name reached through SRV) but not target.test.
    cert = make_certificate(tmp_path, ["remote.test", "notary.test", "srv.test"], ["127.0.0.1"])
    remote = FakeHomeserver("remote.test", generate_signing_key("remote1"))
    notary = FakeHomeserver("notary.test", generate_signing_key("notary1"))
    async with (
        serve(remote.app(), tls=cert.server_context()) as remote_port,
        serve(notary.app(), tls=cert.server_context()) as notary_port,
        fake_dns_server({}) as dns,
    ):
        remote.port, notary.port = remote_port, notary_port
        state = World(cert, remote, notary, dns, free_port())
        yield state
        for session in state.sessions:
            await session.close()
