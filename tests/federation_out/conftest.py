"""Fixtures of the outbound sender tests: a room engine on a fresh database signing with
`OUR_KEY`, the real outbound stack, and a running `FakePeer`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from homeserver.remote.factory import RemoteServices
from tests.federation_out.peer import FakePeer, remote_services, running_peer
from tests.federation_out.sender_support import OUR_KEY
from tests.remote.support import LoopbackCertificate, make_certificate
from tests.services.pipeline_harness import Harness, make_harness


@pytest.fixture
def cert(tmp_path: Path) -> LoopbackCertificate:
    return make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])


@pytest.fixture
async def harness(pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    h = await make_harness(pool, signing_key=OUR_KEY)
    yield h
    await h.pipeline.close()


@pytest.fixture
async def remote(tmp_path: Path, pool: asyncpg.Pool) -> AsyncIterator[RemoteServices]:
    services = remote_services(tmp_path, pool, OUR_KEY)
    yield services
    await services.close()


@pytest.fixture
async def peer(cert: LoopbackCertificate) -> AsyncIterator[FakePeer]:
    async with running_peer(cert, OUR_KEY) as fake:
        yield fake
