"""Server-Server API handlers."""
