"""Memory: fixed malloc thresholds keep argon2's 19 MiB out of the heap (homeserver.memory);
the server code loads one ed25519 library, not cryptography (docs/memory.md)."""

from __future__ import annotations

import gc
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from federation.pdu import Event
from federation.room_versions import room_version
from federation.signing import signing_key_from_seed
from homeserver.config import ConfigError, parse_config
from homeserver.memory import release_free_memory, settle_after_startup
from homeserver.remote.factory import tls_setting
from homeserver.services.state import RoomStateCache
from homeserver.storage.event_rows import EventRow
from homeserver.storage.events import EventsStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.state import StateStore
from homeserver.tls import build_self_signed_certificate
from tests.federation.builders import make_event

_GLIBC = sys.platform.startswith("linux")

# Hashes with the production cost (19 MiB each) on the worker thread, then prints how much the
# resident set grew, in KiB.
_HASH_AND_MEASURE = textwrap.dedent(
    """
    import asyncio, sys
    from homeserver.memory import tune_malloc
    from homeserver.services.passwords import PasswordHashing

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    if sys.argv[1] == "tuned":
        assert tune_malloc()

    async def main():
        hashing = PasswordHashing()
        await hashing.hash_async("warm up")
        before = rss_kib()
        for n in range(3):
            await hashing.hash_async(f"pw{n}")
        print(rss_kib() - before)

    asyncio.run(main())
    """
)


def _growth_kib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _HASH_AND_MEASURE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(not _GLIBC, reason="mallopt and /proc are glibc/Linux features")
def test_with_fixed_thresholds_hashing_leaves_no_19_mib_in_the_heap() -> None:
    assert _growth_kib("tuned") < 4 * 1024


@pytest.mark.skipif(not _GLIBC, reason="mallopt and /proc are glibc/Linux features")
def test_without_them_glibc_keeps_a_hash_worth_of_memory() -> None:
    # The behaviour tune_malloc exists for: if this stops holding, the tuning can go.
    assert _growth_kib("default") > 15 * 1024


def test_settling_freezes_the_survivors_out_of_the_collector() -> None:
    try:
        settle_after_startup()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.skipif(not _GLIBC, reason="malloc_trim is glibc's")
def test_free_memory_can_be_released() -> None:
    assert release_free_memory()


def test_libsodium_signatures_are_the_bytes_cryptography_gives() -> None:
    # Ed25519 signatures are deterministic (RFC 8032), so the switch of library changes nothing
    # on the wire; the spec's own vectors are in tests/federation/test_spec_vectors.py.
    for n in range(8):
        seed = bytes((n * 37 + i) % 256 for i in range(32))
        ours = signing_key_from_seed(seed, "v1")
        theirs = Ed25519PrivateKey.from_private_bytes(seed)
        message = b'{"n":%d,"room":"!r:example.org"}' % n
        assert ours.sign(message) == theirs.sign(message)
        assert ours.public_key == theirs.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


_RUN_TIME_IMPORTS = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    import homeserver.cli, homeserver.server, homeserver.app
    from homeserver.server import load_signing_key
    from federation.signing import sign_json, verify_json

    with tempfile.TemporaryDirectory() as tmp:
        key = load_signing_key(Path(tmp) / "keys" / "signing.key")  # a new key
        signed = sign_json({"a": 1}, "example.org", key)
        verify_json(signed, "example.org", key.key_id, key.public_key)
    print(sorted(name for name in sys.modules if name.split(".")[0] == "cryptography"))
    """
)


def test_the_server_signs_and_verifies_without_loading_cryptography() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN_TIME_IMPORTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


async def test_verify_tls_uses_a_verifying_context_without_building_another(
    tmp_path: Path,
) -> None:
    # tls_setting(True) hands aiohttp True, its own verifying context (the system's trust
    # store): a self-signed certificate is refused; verify_tls false accepts it.
    cert_pem, key_pem = build_self_signed_certificate(["localhost"], ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    app = web.Application()

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert tls_setting(True) is True
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://127.0.0.1:{port}/", ssl=tls_setting(True))
            async with session.get(f"https://127.0.0.1:{port}/", ssl=tls_setting(False)) as r:
                assert await r.text() == "hello"
    finally:
        await runner.cleanup()


def test_event_cache_size_is_a_config_key() -> None:
    assert parse_config({"server_name": "example.org"}).caches.event_cache_size == 10_000
    config = parse_config({"server_name": "example.org", "caches": {"event_cache_size": 500}})
    assert config.caches.event_cache_size == 500
    with pytest.raises(ConfigError, match="event_cache_size"):
        parse_config({"server_name": "example.org", "caches": {"event_cache_size": -1}})


class _CountingEvents:
    """The one EventsStore read RoomStateCache.get_events makes, counted."""

    def __init__(self, events: list[Event]) -> None:
        self.stored: dict[str, Event] = {event.event_id: event for event in events}
        self.reads: list[list[str]] = []

    async def get_event_rows(self, event_ids: Iterable[str]) -> dict[str, EventRow]:
        wanted = list(event_ids)
        self.reads.append(wanted)
        return {
            eid: EventRow(self.stored[eid], 1, False, False, None, None, None, None)
            for eid in wanted
            if eid in self.stored
        }


async def test_the_event_cache_keeps_at_most_its_configured_size() -> None:
    version = room_version("11")
    events = [
        make_event(version, f"$e{n}", "m.room.message", "@a:test", room_id="!r:test")
        for n in range(3)
    ]
    store = _CountingEvents(events)
    cache = RoomStateCache(
        cast(EventsStore, store),
        cast(RoomsStore, None),
        cast(StateStore, None),
        event_cache_size=2,
    )
    cache.cache_events(events)
    assert set(await cache.get_events(["$e1", "$e2"])) == {"$e1", "$e2"}
    assert store.reads == []
    assert set(await cache.get_events(["$e0"])) == {"$e0"}  # the oldest was dropped
    assert store.reads == [["$e0"]]
