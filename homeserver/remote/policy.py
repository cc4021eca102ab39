"""Which servers we federate with: `federation.allowed_servers` and `federation.denied_servers`.

A closed federation of trusted servers is a first-class mode (issue 5): with `allowed_servers`
set, only those servers are contacted or listened to. `denied_servers` always wins. The same
policy object guards outbound requests (before any connection) and, for the inbound handlers,
the origins they accept.
"""

from __future__ import annotations

from collections.abc import Iterable


class ServerPolicy:
    def __init__(
        self,
        allowed_servers: Iterable[str] | None = None,
        denied_servers: Iterable[str] = (),
        *,
        federation_enabled: bool = True,
    ) -> None:
        # Server names compare exactly (appendices "Server Name"): `example.org` and
        # `example.org:8448` are different servers.
        self._allowed = frozenset(allowed_servers) if allowed_servers is not None else None
        self._denied = frozenset(denied_servers)
        self._enabled = federation_enabled

    def allows(self, server_name: str) -> bool:
        if not self._enabled or server_name in self._denied:
            return False
        return self._allowed is None or server_name in self._allowed

    def refusal_reason(self, server_name: str) -> str:
        if not self._enabled:
            return "federation is disabled on this server"
        if server_name in self._denied:
            return "the server is in federation.denied_servers"
        return "the server is not in federation.allowed_servers"
