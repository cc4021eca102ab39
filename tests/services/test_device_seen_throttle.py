"""A device's "last seen" is written at most once per interval, however often its token is
used or reloaded (C-S "Device Management": it "may be a few minutes out of date")."""

from __future__ import annotations

import asyncpg

from homeserver.services.auth import Authenticator, new_token, token_hash
from homeserver.storage import accounts, users

USER = "@dana:veche.test"
MINUTE = 60_000


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


async def _token(pool: asyncpg.Pool) -> str:
    await users.create_user(pool, USER, None, created_ts=0)
    await accounts.create_device(pool, USER, "PHONE", None, 0)
    token = new_token("vat_")
    await accounts.insert_access_token(
        pool, token_hash(token), USER, "PHONE", now_ms=0, expires_ts=None, refresh_token_id=None
    )
    return token


async def _last_seen(pool: asyncpg.Pool) -> tuple[int | None, str | None]:
    device = await accounts.get_device(pool, USER, "PHONE")
    assert device is not None
    return device.last_seen_ts, device.last_seen_ip


async def test_last_seen_is_written_once_per_interval_across_cache_reloads(
    pool: asyncpg.Pool,
) -> None:
    token = await _token(pool)
    clock = _Clock()
    auth = Authenticator(pool, clock=clock)
    start = clock.now

    await auth.authenticate(token, ip="10.0.0.1")
    assert await _last_seen(pool) == (start, "10.0.0.1")

    for minutes in (1, 2, 3, 4):  # each past the token cache's lifetime: reloaded
        clock.now = start + minutes * MINUTE + 1
        await auth.authenticate(token, ip="10.0.0.2")
    assert await _last_seen(pool) == (start, "10.0.0.1")

    clock.now = start + 5 * MINUTE + 1
    await auth.authenticate(token, ip="10.0.0.3")
    assert await _last_seen(pool) == (clock.now, "10.0.0.3")


async def test_a_new_process_writes_last_seen_on_first_use(pool: asyncpg.Pool) -> None:
    token = await _token(pool)
    clock = _Clock()
    await Authenticator(pool, clock=clock).authenticate(token, ip="10.0.0.1")

    clock.now += MINUTE
    await Authenticator(pool, clock=clock).authenticate(token, ip="10.0.0.9")

    assert await _last_seen(pool) == (clock.now, "10.0.0.9")
