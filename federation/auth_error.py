"""The error raised when an event fails the authorisation rules."""

from __future__ import annotations


class AuthError(Exception):
    """The event is not allowed by the authorisation rules; `reason` says which rule failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
