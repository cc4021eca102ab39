"""Client-Server API handlers, one module per spec area."""
