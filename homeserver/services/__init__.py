"""Use cases. No aiohttp or asyncpg types in their signatures."""
