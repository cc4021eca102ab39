"""Token buckets per key: burst, refill, Retry-After, and the off switch."""

from __future__ import annotations

import pytest

from homeserver.config import RateLimitsConfig
from homeserver.errors import MatrixError
from homeserver.services.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, per_second: float = 2.0, burst: int = 3) -> RateLimiter:
    return RateLimiter(RateLimitsConfig(per_second=per_second, burst=burst), clock=clock)


def test_burst_is_allowed_then_limited_with_retry_after() -> None:
    clock = FakeClock()
    limits = limiter(clock)
    for _ in range(3):
        limits.check_user("@a:x")
    with pytest.raises(MatrixError) as caught:
        limits.check_user("@a:x")
    error = caught.value
    assert (error.status, error.errcode) == (429, "M_LIMIT_EXCEEDED")
    assert error.extra["retry_after_ms"] == 500  # one token at 2 per second
    assert error.headers["Retry-After"] == "1"  # whole seconds, rounded up


def test_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock()
    limits = limiter(clock)
    for _ in range(3):
        limits.check_ip("10.0.0.1")
    clock.now += 0.5
    limits.check_ip("10.0.0.1")  # one token back
    with pytest.raises(MatrixError):
        limits.check_ip("10.0.0.1")
    clock.now += 100
    for _ in range(3):  # refills only up to the burst
        limits.check_ip("10.0.0.1")
    with pytest.raises(MatrixError):
        limits.check_ip("10.0.0.1")


def test_keys_are_independent() -> None:
    clock = FakeClock()
    limits = limiter(clock, burst=1)
    limits.check_user("@a:x")
    limits.check_user("@b:x")
    limits.check_ip("@a:x")  # an IP bucket is not the user's bucket
    with pytest.raises(MatrixError):
        limits.check_user("@a:x")


def test_disabled_never_limits() -> None:
    limits = RateLimiter(RateLimitsConfig(enabled=False, per_second=0.001, burst=1))
    for _ in range(100):
        limits.check_user("@a:x")


def test_full_buckets_are_forgotten_when_the_table_grows() -> None:
    clock = FakeClock()
    limits = limiter(clock, per_second=1000.0, burst=1)
    for index in range(10_000):
        limits.check_ip(f"ip{index}")
    clock.now += 1
    limits.check_ip("new")
    assert len(limits._buckets) == 1
