"""The keyring holds the keys it has read in memory (homeserver/remote/key_cache.py): a known
key checks requests and PDUs without a database round trip, while validity
(`valid_until_ts`) and the `old_verify_keys` rules still apply (S2S "Retrieving server keys")."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import asyncpg
import pytest
from aiohttp import web

from federation.keys import build_server_keys
from federation.signing import generate_signing_key, sign_json
from homeserver.remote.key_cache import HeldKey, VerifyKeyCache
from homeserver.remote.keyring import KeyUnavailableError
from tests.remote.fakes import DAY_MS, FakeHomeserver, World, now_ms

REMOTE_KEY_ID = "ed25519:remote1"


class CountingPool:
    """Passes calls to the pool, counting the reads of keys."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.calls: Counter[str] = Counter()

    async def fetchrow(self, *args: Any) -> Any:
        self.calls["fetchrow"] += 1
        return await self._pool.fetchrow(*args)

    async def executemany(self, *args: Any) -> Any:
        self.calls["executemany"] += 1
        return await self._pool.executemany(*args)


def counting(pool: asyncpg.Pool) -> tuple[CountingPool, asyncpg.Pool]:
    proxy = CountingPool(pool)
    return proxy, cast(asyncpg.Pool, proxy)


# The cache alone.


def test_a_held_key_answers_only_within_its_validity() -> None:
    current = HeldKey(b"k", valid_until_ts=1_000, old=False)
    assert current.answers(1_000, for_requests=True)
    assert current.answers(0, for_requests=False)
    assert not current.answers(1_001, for_requests=False)


def test_an_old_key_answers_events_before_its_expiry_but_never_requests() -> None:
    old = HeldKey(b"k", valid_until_ts=1_000, old=True)
    assert old.answers(999, for_requests=False)
    assert not old.answers(999, for_requests=True)
    assert not old.answers(1_001, for_requests=False)


def test_the_least_recently_used_key_goes_first() -> None:
    cache = VerifyKeyCache(max_keys=2)
    key = HeldKey(b"k", 1, old=False)
    cache.put("a", "ed25519:1", key, read_at=0)
    cache.put("b", "ed25519:1", key, read_at=0)
    assert cache.get("a", "ed25519:1") == key  # a is now more recent than b
    cache.put("c", "ed25519:1", key, read_at=0)
    assert len(cache) == 2
    assert cache.get("b", "ed25519:1") is None
    assert cache.get("a", "ed25519:1") == key and cache.get("c", "ed25519:1") == key


def test_a_read_older_than_a_stored_response_is_not_held() -> None:
    cache = VerifyKeyCache()
    read_at = cache.generation
    cache.forget("a")  # a response for a was stored while the row was being read
    cache.put("a", "ed25519:1", HeldKey(b"k", 1, old=False), read_at=read_at)
    assert cache.get("a", "ed25519:1") is None


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        VerifyKeyCache(max_keys=0)


# The keyring with the cache in front of PostgreSQL.


async def test_a_known_key_is_answered_without_reading_the_database(
    world: World, pool: asyncpg.Pool
) -> None:
    proxy, db = counting(pool)
    keyring = world.keyring(db)
    name = world.remote.server_name
    key = await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms())
    reads = proxy.calls["fetchrow"]
    for _ in range(5):
        assert await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms()) == key
        assert await keyring.get_verify_key(name, REMOTE_KEY_ID, 0, for_requests=True) == key
    assert proxy.calls["fetchrow"] == reads
    assert world.remote.requests["keys"] == 1


async def test_a_key_stored_earlier_is_read_once_then_held(
    world: World, pool: asyncpg.Pool
) -> None:
    name = world.remote.server_name
    await world.keyring(pool).get_verify_key(name, REMOTE_KEY_ID, now_ms())
    proxy, db = counting(pool)
    restarted = world.keyring(db)
    for _ in range(3):
        await restarted.get_verify_key(name, REMOTE_KEY_ID, now_ms())
    assert proxy.calls["fetchrow"] == 1
    assert world.remote.requests["keys"] == 1


async def test_a_held_key_past_its_validity_is_fetched_again(
    world: World, pool: asyncpg.Pool
) -> None:
    name = world.remote.server_name
    world.remote.key_response = lambda remote: web.json_response(remote.signed_keys(60_000))
    keyring = world.keyring(pool, refetch_interval_ms=0)
    await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms())
    # Held until a minute from now: a check needing an hour asks the server again, and the
    # longer validity it now gives replaces what was held.
    world.remote.key_response = None
    later = now_ms() + 3600_000
    assert await keyring.get_verify_key(name, REMOTE_KEY_ID, later) == world.remote.key.public_key
    assert world.remote.requests["keys"] == 2
    assert await keyring.get_verify_key(name, REMOTE_KEY_ID, later) == world.remote.key.public_key
    assert world.remote.requests["keys"] == 2
    with pytest.raises(KeyUnavailableError):
        await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms() + 2 * DAY_MS)
    assert world.remote.requests["keys"] == 3


async def test_a_held_old_key_checks_events_but_not_requests(
    world: World, pool: asyncpg.Pool
) -> None:
    old = generate_signing_key("old1")
    expired_ts = now_ms() + 3600_000

    def with_old_key(remote: FakeHomeserver) -> web.Response:
        old_keys = {old.key_id: (old.public_key_base64, expired_ts)}
        return web.json_response(
            build_server_keys(remote.server_name, remote.key, now_ms() + DAY_MS, old_keys)
        )

    world.remote.key_response = with_old_key
    proxy, db = counting(pool)
    keyring = world.keyring(db)
    name = world.remote.server_name
    assert await keyring.get_verify_key(name, old.key_id, now_ms()) == old.public_key
    reads = proxy.calls["fetchrow"]
    assert await keyring.get_verify_key(name, old.key_id, expired_ts) == old.public_key
    for minimum, for_requests in ((now_ms(), True), (expired_ts + 1, False)):
        with pytest.raises(KeyUnavailableError):
            await keyring.get_verify_key(name, old.key_id, minimum, for_requests=for_requests)
    assert proxy.calls["fetchrow"] == reads
    assert world.remote.requests["keys"] == 1  # within the refetch interval: not asked again


async def test_the_number_of_held_keys_is_bounded(world: World, pool: asyncpg.Pool) -> None:
    name = world.remote.server_name
    other = generate_signing_key("other")

    def two_keys(remote: FakeHomeserver) -> web.Response:
        body = remote.signed_keys()
        body["verify_keys"][other.key_id] = {"key": other.public_key_base64}
        del body["signatures"]
        signed = sign_json(body, remote.server_name, remote.key)
        return web.json_response(sign_json(signed, remote.server_name, other))

    world.remote.key_response = two_keys
    proxy, db = counting(pool)
    keyring = world.keyring(db, max_cached_keys=1)
    await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms())
    await keyring.get_verify_key(name, other.key_id, now_ms())
    reads = proxy.calls["fetchrow"]
    # Only one is held: alternating between them reads the table each time.
    for key_id in (REMOTE_KEY_ID, other.key_id, REMOTE_KEY_ID):
        await keyring.get_verify_key(name, key_id, now_ms())
    assert proxy.calls["fetchrow"] == reads + 3
