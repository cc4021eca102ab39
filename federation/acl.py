"""Server Access Control Lists: the `m.room.server_acl` state event and its matching rules.

Spec: C-S "Server Access Control Lists (ACLs) for rooms" (`m.room.server_acl`), S2S "Server
Access Control Lists (ACLs)" (which endpoints apply them), appendices "Glob-style matching".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

SERVER_ACL_EVENT_TYPE: Final = "m.room.server_acl"


@dataclass(frozen=True, slots=True)
class ServerAcl:
    """The content of a room's `m.room.server_acl` event, with invalid entries dropped."""

    allow: tuple[str, ...]
    deny: tuple[str, ...]
    allow_ip_literals: bool

    @staticmethod
    def from_content(content: Mapping[str, Any]) -> ServerAcl:
        """Read the event content leniently: it is room state, not input we may refuse.

        `allow` defaults to an empty list (which denies every server), `deny` to an empty list,
        and `allow_ip_literals` to true "if missing or otherwise not a boolean".
        """
        if not isinstance(content, Mapping):
            content = {}
        allow_ip_literals = content.get("allow_ip_literals", True)
        return ServerAcl(
            allow=_globs(content.get("allow")),
            deny=_globs(content.get("deny")),
            allow_ip_literals=allow_ip_literals if isinstance(allow_ip_literals, bool) else True,
        )


def is_server_allowed(acl: ServerAcl | None, server_name: str) -> bool:
    """Whether `server_name` may take part in a room with this ACL (`m.room.server_acl`).

    The steps, in the spec's order:
    1. No ACL event in the room state: allow.
    2. An IP address literal (v4 or v6) when `allow_ip_literals` is false: deny.
    3. Matches an entry in `deny`: deny.
    4. Matches an entry in `allow`: allow.
    5. Otherwise deny.
    The port is never considered ("evil.com:8448" is matched as "evil.com").
    """
    if acl is None:
        return True
    host = strip_port(server_name)
    if not acl.allow_ip_literals and is_ip_literal(host):
        return False
    if any(_glob(pattern).matches(host) for pattern in acl.deny):
        return False
    return any(_glob(pattern).matches(host) for pattern in acl.allow)


def strip_port(server_name: str) -> str:
    """The host part of a server name (`host [":" port]`, the host maybe `[IPv6]`)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    host, colon, port = server_name.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host
    return server_name


def is_ip_literal(host: str) -> bool:
    """Whether a host (port already stripped) is an IPv4 address or a bracketed IPv6 address."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _globs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(entry for entry in value if isinstance(entry, str))


@dataclass(frozen=True, slots=True)
class _Glob:
    """A compiled glob (appendices "Glob-style matching": `*` is any run, `?` one character).

    Matching is case-insensitive. Rather than translating to a regular expression, whose
    backtracking makes patterns like `*a*a*a*a*b` take exponential time on long names, the
    pattern is split at `*` and each literal segment is placed at its leftmost fit, which
    is exact for `*`-globs and costs at most O(len(name) × len(pattern)).
    """

    segments: tuple[str, ...]  # lower-cased; a single segment means the pattern has no `*`

    def matches(self, name: str) -> bool:
        name = name.lower()
        if len(self.segments) == 1:
            return len(name) == len(self.segments[0]) and _fits_at(name, 0, self.segments[0])
        prefix, *middle, suffix = self.segments
        end = len(name) - len(suffix)
        if end < len(prefix):
            return False
        if not (_fits_at(name, 0, prefix) and _fits_at(name, end, suffix)):
            return False
        pos = len(prefix)
        for segment in middle:
            found = _find(name, segment, pos, end)
            if found < 0:
                return False
            pos = found + len(segment)
        return True


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> _Glob:
    return _Glob(segments=tuple(pattern.lower().split("*")))


def _fits_at(name: str, start: int, segment: str) -> bool:
    """Whether `segment` (where `?` is any one character) matches `name` at `start`."""
    return all(want == "?" or name[start + i] == want for i, want in enumerate(segment))


def _find(name: str, segment: str, start: int, end: int) -> int:
    """The leftmost position in `[start, end - len(segment)]` where `segment` fits, or -1."""
    if "?" not in segment:
        return name.find(segment, start, end)
    for pos in range(start, end - len(segment) + 1):
        if _fits_at(name, pos, segment):
            return pos
    return -1
