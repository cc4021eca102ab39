"""The asyncpg pool as homeserver/storage/database.py configures it."""

from __future__ import annotations

from homeserver.storage import database


async def test_released_connection_with_open_transaction_comes_back_rolled_back(
    migrated_db_dsn: str,
) -> None:
    pool = await database.create_pool(migrated_db_dsn, min_connections=1, max_connections=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMPORARY TABLE pool_probe (x int)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            # The table existed only inside the rolled-back transaction.
            assert await conn.fetchval("SELECT to_regclass('pool_probe')") is None
    finally:
        await pool.close()


async def test_release_sends_no_reset_query(migrated_db_dsn: str) -> None:
    """Releasing costs no round trip: a session setting survives to the next acquire."""
    pool = await database.create_pool(migrated_db_dsn, min_connections=1, max_connections=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'veche-probe'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "veche-probe"
    finally:
        await pool.close()
