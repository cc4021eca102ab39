"""HTTP layer: aiohttp handlers for the Client-Server and Server-Server APIs."""
