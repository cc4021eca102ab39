"""The error that stops a start-up (homeserver/server.py): one clear log line, exit code 1."""

from __future__ import annotations


class StartupError(Exception):
    """Start-up cannot continue; the message is for the operator (no secrets in it)."""
