"""`GET /health`: 200 only when the database is reachable and fully migrated (CONTRACT)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg
from aiohttp import web

from homeserver.errors import database_unavailable_response, error_response
from homeserver.storage.database import is_database_unavailable

logger = logging.getLogger(__name__)

_CHECK_TIMEOUT_S: Final = 3.0


def add_routes(router: web.UrlDispatcher, pool: asyncpg.Pool, schema_version: int) -> None:
    async def get_health(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                applied = await pool.fetchval("SELECT max(version) FROM schema_version")
        except TimeoutError:
            return database_unavailable_response()
        except asyncpg.UndefinedTableError:
            applied = None
        except Exception as exc:
            if is_database_unavailable(exc):
                return database_unavailable_response()
            raise
        if applied != schema_version:
            return error_response(
                503,
                {"errcode": "M_UNKNOWN", "error": "database schema not up to date"},
                {"Retry-After": "5"},
            )
        return web.Response(text="OK")

    router.add_get("/health", get_health)
