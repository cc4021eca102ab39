"""`GET https://<hostname>/.well-known/matrix/server`: server delegation, fetched and cached.

S2S "Resolving server names", step 3, and `wellknown.yaml`: 30x redirects are followed (loops
avoided); responses, successful or not, are cached — respecting the cache headers, 24 hours by
default, 48 hours at most; errors for up to an hour, backing off exponentially on repeated
failures. Any invalid response (non-200, bad JSON, no valid `m.server`) means "no delegation":
the caller goes on with SRV records (step 4).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp
import orjson
from yarl import URL

from federation.ids import parse_server_name

logger = logging.getLogger(__name__)

WELL_KNOWN_PATH: Final = "/.well-known/matrix/server"
DEFAULT_CACHE_S: Final = 24 * 3600.0  # "The recommended sensible default is 24 hours."
MAX_CACHE_S: Final = 48 * 3600.0  # "a maximum cache time for responses: 48 hours"
# Our floor: a `no-store` or `max-age=0` answer would otherwise send one extra request to the
# peer before every request we make to it.
MIN_CACHE_S: Final = 5 * 60.0
ERROR_CACHE_INITIAL_S: Final = 5 * 60.0  # doubled for each consecutive failure…
ERROR_CACHE_MAX_S: Final = 3600.0  # …"cached for up to an hour"
MAX_REDIRECTS: Final = 5
MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_CACHED_HOSTS: Final = 10_000
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


class WellKnownError(Exception):
    """The `.well-known` lookup gave no usable delegation (the reason is for logs)."""


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    delegated_server_name: str | None  # None: no (valid) delegation
    expires_at: float
    consecutive_failures: int


class WellKnownResolver:
    """Looks up and caches the delegated server name of a hostname.

    `port` exists for tests (the spec always uses 443); `tls` is an `ssl.SSLContext`, True for
    the system's default verification, or False when `federation.verify_tls` is off.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        tls: ssl.SSLContext | bool = True,
        port: int = 443,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._tls = tls
        self._port = port
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[str | None]] = {}

    async def delegated_server_name(self, hostname: str) -> str | None:
        """The `m.server` value for `hostname`, or None if there is no valid delegation."""
        entry = self._cache.get(hostname)
        if entry is not None and entry.expires_at > self._clock():
            self._cache.move_to_end(hostname)
            return entry.delegated_server_name
        # Concurrent lookups of one hostname share a single request.
        task = self._in_flight.get(hostname)
        if task is None:
            task = asyncio.ensure_future(self._refresh(hostname, entry))
            self._in_flight[hostname] = task
            task.add_done_callback(lambda _: self._in_flight.pop(hostname, None))
        return await asyncio.shield(task)

    async def _refresh(self, hostname: str, previous: _CacheEntry | None) -> str | None:
        try:
            delegated, cache_s = await self._fetch(hostname)
            entry = _CacheEntry(delegated, self._clock() + cache_s, 0)
        except WellKnownError as exc:
            failures = (previous.consecutive_failures if previous else 0) + 1
            cache_s = min(ERROR_CACHE_MAX_S, ERROR_CACHE_INITIAL_S * 2 ** (failures - 1))
            logger.debug("no .well-known delegation for %s: %s", hostname, exc)
            entry = _CacheEntry(None, self._clock() + cache_s, failures)
        self._remember(hostname, entry)
        return entry.delegated_server_name

    def _remember(self, hostname: str, entry: _CacheEntry) -> None:
        self._cache[hostname] = entry
        self._cache.move_to_end(hostname)
        while len(self._cache) > MAX_CACHED_HOSTS:
            self._cache.popitem(last=False)

    async def _fetch(self, hostname: str) -> tuple[str, float]:
        """`(delegated server name, seconds to cache)`, following redirects by hand so that
        each hop is checked (HTTPS only, no loops, a bounded number)."""
        port = None if self._port == 443 else self._port
        url = URL.build(scheme="https", host=hostname, port=port, path=WELL_KNOWN_PATH)
        seen = {url}
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with self._session.get(
                    url, allow_redirects=False, ssl=self._tls, timeout=self._timeout
                ) as response:
                    if response.status in _REDIRECT_STATUSES:
                        url = _redirect_target(url, response.headers.get("Location"), seen)
                        seen.add(url)
                        continue
                    if response.status != 200:
                        raise WellKnownError(f"{url} answered {response.status}")
                    body = await _read_limited(response, MAX_BODY_BYTES)
                    return parse_well_known(body), cache_period_s(response.headers, self._clock())
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise WellKnownError(f"{url}: {type(exc).__name__}: {exc}") from None
        raise WellKnownError(f"more than {MAX_REDIRECTS} redirects")


def _redirect_target(current: URL, location: str | None, seen: set[URL]) -> URL:
    if not location:
        raise WellKnownError(f"{current} redirected without a Location")
    target = current.join(URL(location))
    if target.scheme != "https":
        raise WellKnownError(f"{current} redirected to a non-HTTPS URL {target}")
    if target in seen:
        raise WellKnownError(f"redirect loop at {target}")
    return target


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise WellKnownError(f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise WellKnownError(f"body larger than {limit} bytes")
    return bytes(body)


def parse_well_known(body: bytes) -> str:
    """The `m.server` of a `.well-known/matrix/server` body; the Content-Type is not checked
    ("servers parsing the response should assume that the body is JSON regardless of type")."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WellKnownError(f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WellKnownError("body is not a JSON object")
    delegated = value.get("m.server")
    if not isinstance(delegated, str):
        raise WellKnownError("no m.server string")
    try:
        parse_server_name(delegated)
    except ValueError as exc:
        raise WellKnownError(f"m.server: {exc}") from None
    return delegated


def cache_period_s(headers: Mapping[str, str], now: float) -> float:
    """How long to keep a successful answer: `Cache-Control` (`no-store`, `no-cache`,
    `max-age`), else `Expires`, else 24 hours; always within [MIN_CACHE_S, MAX_CACHE_S]."""
    directives = _cache_control_directives(headers.get("Cache-Control", ""))
    period: float
    if "no-store" in directives or "no-cache" in directives:
        period = 0.0
    elif "max-age" in directives:
        period = _int_or_zero(directives["max-age"])
    elif "Expires" in headers:
        period = _seconds_until(headers["Expires"], headers.get("Date"), now)
    else:
        period = DEFAULT_CACHE_S
    return min(MAX_CACHE_S, max(MIN_CACHE_S, period))


def _cache_control_directives(value: str) -> dict[str, str]:
    directives: dict[str, str] = {}
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        if name:
            directives[name.lower()] = argument.strip().strip('"')
    return directives


def _int_or_zero(text: str) -> float:
    # RFC 9111 §4.2.1: an invalid max-age is treated as stale.
    return float(int(text)) if text.isdigit() else 0.0


def _seconds_until(expires: str, date: str | None, now: float) -> float:
    """RFC 9111 §5.3: an invalid `Expires` (such as "0") means already expired."""
    try:
        expires_at = parsedate_to_datetime(expires).timestamp()
        reference = parsedate_to_datetime(date).timestamp() if date else now
    except (TypeError, ValueError, IndexError):
        return 0.0
    return expires_at - reference
