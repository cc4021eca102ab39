"""Access tokens: making them, and turning a presented token into a `Requester`.

C-S "Using access tokens": the token comes in `Authorization: Bearer <token>` (or, deprecated,
the `access_token` query parameter). Missing → 401 `M_MISSING_TOKEN`; unknown or revoked →
401 `M_UNKNOWN_TOKEN`; expired (only tokens issued with a refresh token expire) → 401
`M_UNKNOWN_TOKEN` with `soft_logout: true` (C-S "Soft logout", "Refreshing access tokens").

Tokens are 32 random bytes (URL-safe base64 with a prefix saying what they are); the database
only ever sees their SHA-256. A valid token is looked up once and then answered from a small
in-process cache; every revocation in this process (logout, device deletion, password change,
deactivation, refresh) calls `forget_user`, and cache entries live at most a minute, which
bounds staleness should several processes ever share a database.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import asyncpg

from homeserver.errors import MatrixError
from homeserver.storage import accounts

ACCESS_TOKEN_PREFIX: Final = "vat_"
REFRESH_TOKEN_PREFIX: Final = "vrt_"
_TOKEN_BYTES: Final = 32

# How long a validated token is answered from memory before the database is asked again.
_CACHE_TTL_MS: Final = 60_000
_CACHE_MAX_ENTRIES: Final = 20_000
# Device "last seen" (C-S "Device Management": "may be a few minutes out of date").
_LAST_SEEN_INTERVAL_MS: Final = 5 * 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(_TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is making an authenticated client request."""

    user_id: str
    device_id: str | None
    is_admin: bool
    is_guest: bool
    # Database id of the access token used (logout revokes exactly this token).
    access_token_id: int


def missing_token() -> MatrixError:
    return MatrixError(401, "M_MISSING_TOKEN", "Missing access token")


def unknown_token(*, soft_logout: bool = False) -> MatrixError:
    message = "Access token has expired" if soft_logout else "Unknown access token"
    return MatrixError(401, "M_UNKNOWN_TOKEN", message, soft_logout=soft_logout)


def extract_access_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The access token of a request, from its headers and query parameters.

    `Authorization: Bearer <token>` wins; the `access_token` query parameter is the deprecated
    alternative (removed in spec v1.20, still sent by older clients). An `Authorization` header
    with another scheme, or without credentials, is answered as a missing token.
    """
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
        return credentials.strip()
    token = query.get("access_token")
    return token or None


@dataclass(slots=True)
class _Cached:
    requester: Requester
    expires_ts: int | None
    cached_until: int
    last_seen_written: int


class Authenticator:
    """Resolves access tokens to `Requester`s (the one place tokens are checked)."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], int] = now_ms) -> None:
        self._pool = pool
        self._clock = clock
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._by_user: dict[str, set[bytes]] = {}

    async def authenticate(self, token: str | None, *, ip: str | None = None) -> Requester:
        """The requester behind `token`, or 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`."""
        if token is None:
            raise missing_token()
        digest = token_hash(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is None or cached.cached_until <= now:
            cached = await self._load(digest, now)
        if cached.expires_ts is not None and cached.expires_ts <= now:
            raise unknown_token(soft_logout=True)
        if now - cached.last_seen_written >= _LAST_SEEN_INTERVAL_MS:
            cached.last_seen_written = now
            requester = cached.requester
            if requester.device_id is not None:
                await accounts.record_device_seen(
                    self._pool, requester.user_id, requester.device_id, ip, now
                )
        return cached.requester

    async def _load(self, digest: bytes, now: int) -> _Cached:
        # A token answered from memory before keeps its last write of "last seen", so the
        # device is written at most once per `_LAST_SEEN_INTERVAL_MS`, not once per reload.
        previous = self._cache.get(digest)
        last_seen_written = previous.last_seen_written if previous is not None else 0
        self._drop(digest)
        info = await accounts.get_access_token(self._pool, digest)
        if info is None or info.deactivated:
            raise unknown_token()
        refreshed = info.refresh_token_id is not None
        if refreshed and not info.used and (info.expires_ts is None or info.expires_ts > now):
            # C-S "Refreshing access tokens": using the new access token revokes the old
            # refresh token.
            await accounts.mark_access_token_used(self._pool, info.token_id, info.refresh_token_id)
        requester = Requester(
            user_id=info.user_id,
            device_id=info.device_id,
            is_admin=info.admin,
            is_guest=info.is_guest,
            access_token_id=info.token_id,
        )
        cached = _Cached(requester, info.expires_ts, now + _CACHE_TTL_MS, last_seen_written)
        self._cache[digest] = cached
        self._by_user.setdefault(info.user_id, set()).add(digest)
        while len(self._cache) > _CACHE_MAX_ENTRIES:
            oldest = next(iter(self._cache))
            self._drop(oldest)
        return cached

    def _drop(self, digest: bytes) -> None:
        cached = self._cache.pop(digest, None)
        if cached is None:
            return
        user_id = cached.requester.user_id
        digests = self._by_user.get(user_id)
        if digests is not None:
            digests.discard(digest)
            if not digests:
                del self._by_user[user_id]

    def forget_user(self, user_id: str) -> None:
        """Drop every cached token of `user_id`: call after revoking any of their tokens."""
        for digest in list(self._by_user.get(user_id, ())):
            self._drop(digest)
