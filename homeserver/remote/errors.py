"""Failures of outbound requests to other homeservers."""

from __future__ import annotations


class RemoteUnreachable(Exception):
    """No answer could be had from the destination: discovery, connection, TLS or a timeout
    failed. Worth retrying later (the per-destination sender backs off)."""

    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


class DestinationNotAllowed(RemoteUnreachable):
    """Our own configuration forbids talking to this server (`federation.allowed_servers` /
    `denied_servers`, or federation disabled). Raised before any connection is made; retrying
    cannot help."""


class AddressBlocked(RemoteUnreachable):
    """Every address of the destination lies in a denied IP range (`federation.ip_range_allowlist`
    lifts that)."""


class RemoteError(Exception):
    """The destination answered, but with an error status or an unusable body.

    `errcode` and `message` come from the standard error body when there is one; `errcode` is
    None when the body was not a Matrix error (an HTML error page, a body too large, bad JSON).
    """

    def __init__(self, destination: str, status: int, errcode: str | None, message: str) -> None:
        super().__init__(f"{destination}: {status} {errcode or ''} {message}".replace("  ", " "))
        self.destination = destination
        self.status = status
        self.errcode = errcode
        self.message = message
