"""The migration runner against a real PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from homeserver.storage import database
from homeserver.storage.migrations import (
    SCHEMA_DIR,
    MigrationError,
    SchemaTooNewError,
    apply_migrations,
    current_version,
    load_migrations,
)


def write_schema(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


async def table_exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


@pytest.fixture
async def conn(db_dsn: str):
    connection = await database.connect(db_dsn)
    yield connection
    await connection.close()


async def test_fresh_database_gets_every_migration_in_order(conn: asyncpg.Connection) -> None:
    shipped = load_migrations()
    applied = await apply_migrations(conn)
    assert [m.version for m in applied] == [m.version for m in shipped]
    rows = await conn.fetch("SELECT version, name FROM schema_version ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in shipped]
    assert await table_exists(conn, "users")
    assert await current_version(conn) == shipped[-1].version


async def test_shipped_schema_directory_holds_the_initial_migration() -> None:
    assert (SCHEMA_DIR / "0001_initial.sql").is_file()
    assert load_migrations()[0].version == 1


async def test_rerun_is_a_no_op(conn: asyncpg.Connection) -> None:
    await apply_migrations(conn)
    before = await conn.fetch("SELECT version, applied_ts FROM schema_version ORDER BY version")
    assert await apply_migrations(conn) == []
    after = await conn.fetch("SELECT version, applied_ts FROM schema_version ORDER BY version")
    assert before == after


async def test_only_pending_migrations_are_applied(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    schema = write_schema(tmp_path / "schema", {"0001_a.sql": "CREATE TABLE a (x INT);"})
    await apply_migrations(conn, load_migrations(schema))
    write_schema(schema, {"0002_b.sql": "CREATE TABLE b (y INT); INSERT INTO a VALUES (1);"})
    applied = await apply_migrations(conn, load_migrations(schema))
    assert [m.name for m in applied] == ["0002_b.sql"]
    assert await conn.fetchval("SELECT count(*) FROM a") == 1


async def test_two_concurrent_runners_apply_each_migration_once(
    db_dsn: str, tmp_path: Path
) -> None:
    # The first migration is slow, so the second runner really starts while the first works;
    # without the advisory lock it would fail on "relation already exists".
    schema = write_schema(
        tmp_path / "schema",
        {
            "0001_slow.sql": "SELECT pg_sleep(0.5); CREATE TABLE slow (x INT);",
            "0002_next.sql": "CREATE TABLE next (y INT);",
        },
    )
    migrations = load_migrations(schema)
    first, second = await database.connect(db_dsn), await database.connect(db_dsn)
    try:
        results = await asyncio.gather(
            apply_migrations(first, migrations), apply_migrations(second, migrations)
        )
        versions = sorted(m.version for applied in results for m in applied)
        assert versions == [1, 2]
        assert await first.fetchval("SELECT count(*) FROM schema_version") == 2
    finally:
        await first.close()
        await second.close()


async def test_database_newer_than_code_is_refused(conn: asyncpg.Connection) -> None:
    await apply_migrations(conn)
    newest = load_migrations()[-1].version
    await conn.execute(
        "INSERT INTO schema_version (version, name, applied_ts) VALUES ($1, 'future.sql', 0)",
        newest + 1,
    )
    with pytest.raises(SchemaTooNewError) as caught:
        await apply_migrations(conn)
    assert caught.value.database_version == newest + 1
    assert caught.value.code_version == newest
    assert "newer Veche" in str(caught.value)


async def test_too_new_check_applies_nothing(conn: asyncpg.Connection, tmp_path: Path) -> None:
    schema = write_schema(tmp_path / "schema", {"0001_a.sql": "CREATE TABLE a (x INT);"})
    await apply_migrations(conn, load_migrations(schema))
    await conn.execute("INSERT INTO schema_version VALUES (7, '0007_future.sql', 0)")
    write_schema(schema, {"0002_b.sql": "CREATE TABLE b (y INT);"})
    with pytest.raises(SchemaTooNewError):
        await apply_migrations(conn, load_migrations(schema))
    assert not await table_exists(conn, "b")


async def test_failing_migration_leaves_nothing_behind(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    schema = write_schema(
        tmp_path / "schema",
        {
            "0001_ok.sql": "CREATE TABLE ok (x INT);",
            "0002_bad.sql": "CREATE TABLE half (x INT); NOPE;",
        },
    )
    with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
        await apply_migrations(conn, load_migrations(schema))
    assert await table_exists(conn, "ok")
    assert not await table_exists(conn, "half")
    assert await current_version(conn) == 1
    # The lock was released: a corrected file applies on the next run.
    write_schema(schema, {"0002_bad.sql": "CREATE TABLE half (x INT);"})
    assert [m.version for m in await apply_migrations(conn, load_migrations(schema))] == [2]


def test_misnamed_migration_file_is_rejected(tmp_path: Path) -> None:
    schema = write_schema(tmp_path / "schema", {"1_initial.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(schema)


def test_duplicate_migration_version_is_rejected(tmp_path: Path) -> None:
    schema = write_schema(
        tmp_path / "schema", {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}
    )
    with pytest.raises(MigrationError, match="two files"):
        load_migrations(schema)


async def test_version_of_never_migrated_database_is_none(conn: asyncpg.Connection) -> None:
    assert await current_version(conn) is None
