"""Rate limiting (C-S "Rate limiting"): a token bucket per user and per client IP address.

Each key ("user:@alice:example.org", "ip:203.0.113.7") has a bucket holding up to
`rate_limits.burst` tokens, refilled at `rate_limits.per_second`; every limited request takes
one. An empty bucket answers 429 `M_LIMIT_EXCEEDED` with `retry_after_ms` and a `Retry-After`
header (seconds, rounded up). `rate_limits.enabled: false` turns every check into a no-op.

Buckets live in memory: limits protect this process, and a restart forgives everyone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from homeserver.config import RateLimitsConfig
from homeserver.errors import MatrixError

# Full buckets carry no information; they are swept once the table grows past this size.
_SWEEP_THRESHOLD: Final = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float  # monotonic seconds


def limit_exceeded(retry_after_s: float) -> MatrixError:
    retry_after_ms = max(1, math.ceil(retry_after_s * 1000))
    return MatrixError(
        429,
        "M_LIMIT_EXCEEDED",
        "Too many requests",
        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
        retry_after_ms=retry_after_ms,
    )


class RateLimiter:
    def __init__(
        self, config: RateLimitsConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = config.enabled
        self._rate = config.per_second
        self._burst = float(config.burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._sweep_at = _SWEEP_THRESHOLD

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` tokens from `key`'s bucket, or raise 429 `M_LIMIT_EXCEEDED`."""
        if not self.enabled:
            return
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
                # Many busy clients: sweep again only after the table has doubled.
                self._sweep_at = max(_SWEEP_THRESHOLD, 2 * len(self._buckets))
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens < cost:
            raise limit_exceeded((cost - bucket.tokens) / self._rate)
        bucket.tokens -= cost

    def check_user(self, user_id: str) -> None:
        self.check("user:" + user_id)

    def check_ip(self, ip: str | None) -> None:
        self.check("ip:" + (ip or "unknown"))

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled completely (they behave like new ones)."""
        full_after = self._burst / self._rate
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if now - bucket.updated < full_after
        }
