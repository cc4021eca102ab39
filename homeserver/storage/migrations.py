"""Schema migrations: numbered, forward-only SQL files applied in order.

Files live in `schema/NNNN_name.sql` at the top of the source tree. `pip install .` installs the
same directory next to the `homeserver` package (see `[tool.setuptools.package-data]` in
pyproject.toml), so `SCHEMA_DIR` is found the same way in a checkout and in an installation.

Each file runs in its own transaction together with the row that records it in `schema_version`,
so a migration is either fully applied and recorded, or not at all. The whole run holds a
PostgreSQL advisory lock, so processes starting together apply each file exactly once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent.parent / "schema"

# Any constant works; it only has to be the same in every Veche process. Advisory locks are
# scoped to the current database, so servers sharing a PostgreSQL cluster do not block each other.
MIGRATION_LOCK_ID: Final = 0x5645434845_01  # "VECHE", 1

_FILE_NAME: Final = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

_CREATE_VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,  -- the NNNN of schema/NNNN_name.sql
    name       TEXT NOT NULL,        -- the file name, for operators reading the table
    applied_ts BIGINT NOT NULL       -- when it was applied, milliseconds since the Unix epoch
)
"""


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why, for an operator."""


class SchemaTooNewError(MigrationError):
    """The database was migrated by a newer Veche than this one."""

    def __init__(self, database_version: int, code_version: int) -> None:
        super().__init__(
            f"the database schema is at version {database_version}, but this Veche only knows "
            f"versions up to {code_version}: it was used by a newer Veche. Upgrade Veche "
            "(migrations are forward-only; downgrading is not supported)."
        )
        self.database_version = database_version
        self.code_version = code_version


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    """Read `NNNN_name.sql` files in version order; reject misnamed or duplicate files."""
    if not schema_dir.is_dir():
        raise MigrationError(f"schema directory {schema_dir} not found (broken installation?)")
    migrations: dict[int, Migration] = {}
    for path in sorted(schema_dir.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files must be named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path}: version {version} is used by two files")
        migrations[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    if not migrations:
        raise MigrationError(f"no migrations found in {schema_dir}")
    return [migrations[v] for v in sorted(migrations)]


def latest_version(migrations: list[Migration]) -> int:
    return migrations[-1].version


async def current_version(conn: asyncpg.Connection) -> int | None:
    """The newest applied version, or None for a database Veche has never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return None
    version: int | None = await conn.fetchval("SELECT max(version) FROM schema_version")
    return version


async def apply_migrations(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Bring the schema up to date; return the migrations this call applied (maybe none).

    Raises `SchemaTooNewError` if the database knows a version newer than the newest file.
    """
    if migrations is None:
        migrations = load_migrations()
    # A session-level lock: released on unlock, or by PostgreSQL if this connection dies.
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(_CREATE_VERSION_TABLE)
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_version")}
        code_version = latest_version(migrations)
        if applied and max(applied) > code_version:
            raise SchemaTooNewError(max(applied), code_version)
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            await _apply_one(conn, migration)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


async def _apply_one(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            # No arguments: the simple query protocol, so a file may hold many statements.
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_ts) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                int(time.time() * 1000),
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
