"""The asyncpg connection pool: creation, start-up wait, readiness, and "database down" detection.

There is one pool per process (homeserver/app.py hands it to everything that needs storage).
Connections that break are dropped by asyncpg and replaced on the next acquire, so service
resumes by itself once PostgreSQL is back; until then requests fail fast with 503 (CONTRACT.md
"Durability and faults").
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import orjson

logger = logging.getLogger(__name__)

# A query or connection attempt that takes longer than this is treated as "database down", so
# requests fail within the 10 s the contract allows instead of hanging.
CONNECT_TIMEOUT_S: Final = 5.0
COMMAND_TIMEOUT_S: Final = 8.0
STARTUP_WAIT_S: Final = 60.0


class DatabaseUnavailableError(Exception):
    """PostgreSQL cannot be reached; the HTTP layer answers 503 with Retry-After."""


class DatabaseStartupError(Exception):
    """The database could not be reached at start-up; the message is safe to print."""


# Errors that mean "cannot talk to PostgreSQL" rather than "this query is wrong".
_CONNECTION_ERRORS: Final = (
    asyncpg.PostgresConnectionError,  # connection lost mid-query, rejected, ...
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, crashed, starting up
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed" and friends
    DatabaseUnavailableError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    """True if `exc` means PostgreSQL is unreachable (not a bug in a query or a handler).

    OS-level errors (refused, reset, socket file missing) and timeouts only count when they
    were raised inside asyncpg, so an unrelated `OSError` (say, a failed outbound request)
    still surfaces as the bug or remote failure it is.
    """
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, OSError | TimeoutError):
        return _raised_inside_asyncpg(exc.__traceback__)
    return False


def _raised_inside_asyncpg(tb: TracebackType | None) -> bool:
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        tb = tb.tb_next
    return False


def describe_dsn(dsn: str) -> str:
    """`host:port/database` for messages: never the user's password."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    port = parts.port or int((query.get("port") or ["5432"])[0])
    database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or ["(default)"])[0]
    return f"{host}:{port}/{database}"


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns read and write Python objects, encoded with orjson (fast, strict UTF-8).
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        format="text",
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection (migrations, one-shot commands), with the same codecs as the pool."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, min_connections: int = 2, max_connections: int = 20
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_connections,
        max_size=max_connections,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=COMMAND_TIMEOUT_S,
        init=_init_connection,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL): pooled code never sets session state, so that query would only cost every
    released connection one more round trip. asyncpg still rolls back an open transaction
    before calling this."""


# Errors after which waiting cannot help: wrong password, no such database or role.
_PERMANENT_ERRORS: Final = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)


async def wait_for_database(dsn: str, wait_s: float = STARTUP_WAIT_S) -> None:
    """Return once PostgreSQL accepts a connection; raise `DatabaseStartupError` otherwise.

    Transient failures (refused, starting up, timeouts) are retried for `wait_s` seconds; permanent
    ones (authentication, missing database) fail at once. Messages name host and database only.
    """
    target = describe_dsn(dsn)
    deadline = time.monotonic() + wait_s
    delay = 0.25
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=min(CONNECT_TIMEOUT_S, wait_s))
        except _PERMANENT_ERRORS as exc:
            raise DatabaseStartupError(f"cannot use database {target}: {exc}") from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseStartupError(
                    f"database {target} unreachable after {wait_s:.0f} s: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            logger.warning("database %s not reachable yet (%s); retrying", target, exc)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)
        else:
            await conn.close()
            return


async def ping(pool: asyncpg.Pool, within_s: float = 2.0) -> bool:
    """True if a trivial query answers within `within_s` seconds."""
    try:
        async with asyncio.timeout(within_s):
            await pool.fetchval("SELECT 1")
    except Exception as exc:
        if is_database_unavailable(exc) or isinstance(exc, TimeoutError):
            return False
        raise
    return True
