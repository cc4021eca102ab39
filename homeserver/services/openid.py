"""OpenID tokens (C-S "OpenID", `openid.yaml`; S2S "OpenID", GET /openid/userinfo).

A user asks for a token (POST /user/{userId}/openid/request_token) and hands it to a third
party, which asks our federation API who it belongs to. The token is good for nothing else
("It cannot be used to request another OpenID access token or call /sync"), so it lives in
its own table (`openid_tokens`, schema 0017) and never authenticates a client request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import asyncpg

from homeserver.errors import MatrixError

# How long a token stays valid; `expires_in` tells the client.
TOKEN_LIFETIME_S: Final = 3600


def now_ms() -> int:
    return int(time.time() * 1000)


class OpenIdTokens:
    def __init__(
        self, pool: asyncpg.Pool, server_name: str, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self._pool = pool
        self._server_name = server_name
        self._clock = clock

    async def request_token(self, requester: str, user_id: str) -> dict[str, Any]:
        """A new token for the requester; asking for someone else is 403 M_FORBIDDEN."""
        if user_id != requester:
            raise MatrixError(403, "M_FORBIDDEN", "Cannot request OpenID tokens for other users")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM openid_tokens WHERE expires_ts <= $1", now)
            await conn.execute(
                "INSERT INTO openid_tokens (token, user_id, expires_ts) VALUES ($1, $2, $3)",
                token,
                user_id,
                now + TOKEN_LIFETIME_S * 1000,
            )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self._server_name,
            "expires_in": TOKEN_LIFETIME_S,
        }

    async def user_info(self, token: str | None) -> dict[str, str]:
        """S2S GET /openid/userinfo: `{"sub": user_id}`, or 401 M_UNKNOWN_TOKEN."""
        user_id = None
        if token:
            user_id = await self._pool.fetchval(
                "SELECT user_id FROM openid_tokens WHERE token = $1 AND expires_ts > $2",
                token,
                self._clock(),
            )
        if user_id is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
        return {"sub": user_id}
