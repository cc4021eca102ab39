"""Identifiers: server names, user IDs, room IDs, event IDs and room aliases.

Spec: appendices "Identifier Grammar" — "Server Name", "Common Identifier Format",
"User Identifiers" (and "Historical User IDs"), "Room IDs", "Room Aliases", "Event IDs".
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, NewType

UserId = NewType("UserId", str)
RoomId = NewType("RoomId", str)
EventId = NewType("EventId", str)
ServerName = NewType("ServerName", str)
RoomAlias = NewType("RoomAlias", str)
DeviceId = NewType("DeviceId", str)

# User IDs, room IDs, room aliases and event IDs: at most 255 bytes including sigil and domain.
MAX_IDENTIFIER_BYTES: Final = 255

# "Server Name": port = 1*5DIGIT; dns-name = 1*255dns-char; dns-char = DIGIT / ALPHA / "-" / "."
_PORT: Final = re.compile(r"[0-9]{1,5}")
_DNS_NAME: Final = re.compile(r"[A-Za-z0-9.\-]{1,255}")
# IPv6address = 2*45IPv6char; IPv6char = DIGIT / %x41-46 / %x61-66 / ":" / "."
_IPV6_CHARS: Final = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_IPV4_LIKE: Final = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
# "User Identifiers": user_id_char = DIGIT / a-z / "-" / "." / "=" / "_" / "/" / "+"
_USER_LOCALPART: Final = re.compile(r"[a-z0-9\-.=_/+]+")
# Event IDs from v3 (`rooms/v3.md`, `v4-event-ids.md`): `$` + unpadded base64 of a sha256
# (43 characters), the standard alphabet in v3 and the URL-safe one from v4.
_HASH_ID: Final = re.compile(r"[A-Za-z0-9+/\-_]{43}")


def _byte_length(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _is_opaque_localpart(s: str) -> bool:
    """Room ID / alias / historical user localparts: any non-surrogate code point but `:`, NUL."""
    return ":" not in s and "\x00" not in s and not any("\ud800" <= c <= "\udfff" for c in s)


def parse_server_name(s: str) -> tuple[str, int | None]:
    """Split a server name into `(hostname, port)`; raise `ValueError` if it is not valid.

    An IPv6 literal keeps its brackets in the hostname (`"[::1]"`).
    """
    if not isinstance(s, str) or not s:
        raise ValueError("server name must be a non-empty string")
    port: int | None = None
    if s.startswith("["):
        end = s.find("]")
        if end == -1:
            raise ValueError(f"invalid server name {s!r}: unterminated IPv6 literal")
        host, rest = s[: end + 1], s[end + 1 :]
        address = host[1:-1]
        if not _IPV6_CHARS.fullmatch(address):
            raise ValueError(f"invalid server name {s!r}: bad IPv6 literal")
        try:
            ipaddress.IPv6Address(address)  # RFC 3513 section 2.2 text forms
        except ValueError:
            raise ValueError(f"invalid server name {s!r}: bad IPv6 literal") from None
    else:
        host, sep, port_text = s.partition(":")
        rest = sep + port_text
        if not _DNS_NAME.fullmatch(host):
            raise ValueError(f"invalid server name {s!r}: bad hostname")
        if _IPV4_LIKE.fullmatch(host) and any(int(part) > 255 for part in host.split(".")):
            raise ValueError(f"invalid server name {s!r}: IPv4 octet out of range")
    if rest:
        if not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
            raise ValueError(f"invalid server name {s!r}: bad port")
        port = int(rest[1:])
    return host, port


def is_valid_server_name(s: str) -> bool:
    try:
        parse_server_name(s)
    except ValueError:
        return False
    return True


def _split_identifier(s: object, sigil: str) -> tuple[str, str] | None:
    """`&localpart:domain` → `(localpart, domain)` when the sigil, `:` and byte limit fit."""
    if not isinstance(s, str) or not s.startswith(sigil) or ":" not in s:
        return None
    if _byte_length(s) > MAX_IDENTIFIER_BYTES:
        return None
    localpart, _, domain = s[1:].partition(":")
    if not is_valid_server_name(domain):
        return None
    return localpart, domain


def is_valid_localpart(s: str, *, historical: bool = False) -> bool:
    """A user ID localpart; `historical` allows the old grammar ("Historical User IDs").

    Historical localparts may be any non-surrogate code points except `:` and NUL, including
    the empty string; servers must accept them in events over federation.
    """
    if not isinstance(s, str):
        return False
    if historical:
        return _is_opaque_localpart(s)
    return _USER_LOCALPART.fullmatch(s) is not None


def is_valid_user_id(s: str, *, historical: bool = False) -> bool:
    """`@localpart:server_name`, at most 255 bytes."""
    parts = _split_identifier(s, "@")
    return parts is not None and is_valid_localpart(parts[0], historical=historical)


def is_valid_room_id(s: str) -> bool:
    """`!opaque_id:server_name` (v1–v11) or `!` + URL-safe reference hash (v12)."""
    if not isinstance(s, str) or not s.startswith("!"):
        return False
    if ":" not in s:
        return _HASH_ID.fullmatch(s[1:]) is not None and "+" not in s and "/" not in s
    parts = _split_identifier(s, "!")
    return parts is not None and _is_opaque_localpart(parts[0])


def is_valid_event_id(s: str) -> bool:
    """`$opaque_id:server_name` (v1–v2) or `$` + base64 reference hash (v3, v4+)."""
    if not isinstance(s, str) or not s.startswith("$"):
        return False
    if ":" not in s:
        body = s[1:]
        # One alphabet or the other, never a mix of `+/` and `-_`.
        mixed = any(c in body for c in "+/") and any(c in body for c in "-_")
        return _HASH_ID.fullmatch(body) is not None and not mixed
    parts = _split_identifier(s, "$")
    return parts is not None and _is_opaque_localpart(parts[0])


def is_valid_room_alias(s: str) -> bool:
    """`#room_alias:server_name`, at most 255 bytes; the localpart is not empty."""
    parts = _split_identifier(s, "#")
    return parts is not None and parts[0] != "" and _is_opaque_localpart(parts[0])


def server_name_of(identifier: str) -> str:
    """The domain of `&localpart:domain` (everything after the first `:`)."""
    _, sep, domain = identifier.partition(":")
    if not sep:
        raise ValueError(f"{identifier!r} has no server name")
    return domain


def localpart_of(user_id: str) -> str:
    """The localpart of `@localpart:domain` (between the sigil and the first `:`)."""
    if not user_id.startswith("@") or ":" not in user_id:
        raise ValueError(f"{user_id!r} is not a user ID")
    return user_id[1:].partition(":")[0]
