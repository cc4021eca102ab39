"""Storage: asyncpg only. SQL lives here, one module per table group."""
