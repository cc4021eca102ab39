"""Parsers for the scalar values a config file may spell in several ways.

Each parser takes what YAML produced and returns the canonical value, or raises `ValueError`
with a message fit to show an operator next to the key path.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path

from federation.ids import parse_server_name
from federation.signing import decode_verify_key

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")

# Appendices, "Server Name": DNS names "should consist of a series of labels separated by `.`,
# where each label consists of the alphanumeric characters or hyphens".
_DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_IPV4_RE = re.compile(r"^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$")
# Appendices, "Signing Key": the key version is made of [a-zA-Z0-9_].
_KEY_ID_RE = re.compile(r"^ed25519:[A-Za-z0-9_]+$")


def parse_size(value: object) -> object:
    """Bytes as an integer, or a string such as ``"50M"`` (K, M, G are powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError("expected a size in bytes, such as 1048576 or \"1M\"")
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            raise ValueError(
                f"invalid size {value!r}: expected bytes or a number with a K, M or G suffix "
                "(for example \"50M\")"
            )
        return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    return value  # integers and wrong types go on to pydantic's own int check


def parse_duration(value: object) -> object:
    """Seconds as an integer, or a string such as ``"12h"``, ``"1d"`` (units ms s m h d w)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"1d\", \"12h\" or a number of seconds")
    if isinstance(value, int):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: expected a number with one of the units "
                "ms, s, m, h, d, w (for example \"1d\")"
            )
        return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])
    return value


def server_name_problem(server_name: str) -> str | None:
    """Why `server_name` cannot be this server's name, or None if it can.

    The grammar is the spec's (Appendices, "Server Name", via `federation.ids`). Our own name
    must also follow what the prose asks of DNS names (labels of alphanumerics and hyphens) and
    carry a usable port (1–65535), since other servers will connect to it.
    """
    try:
        host, port = parse_server_name(server_name)
    except ValueError as exc:
        return str(exc)
    if port is not None and not 1 <= port <= 65535:
        return f"invalid server name {server_name!r}: the port must be 1 to 65535"
    if host.startswith("[") or _IPV4_RE.match(host):
        return None
    if not all(_DNS_LABEL_RE.match(label) for label in host.split(".")):
        return (
            f"invalid server name {server_name!r}: each dot-separated label of the host name "
            "must be 1–63 letters, digits or hyphens, not starting or ending with a hyphen"
        )
    return None


def cidr(value: str) -> str:
    """An IP range such as ``"127.0.0.0/8"`` or a single address, in canonical form."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"invalid IP range {value!r}: expected CIDR notation such as \"127.0.0.0/8\" or "
            "\"::1/128\""
        ) from None


def ed25519_key_id(value: str) -> str:
    """A key ID ``ed25519:<version>`` (Appendices, "Signing Key")."""
    if not _KEY_ID_RE.match(value):
        raise ValueError(
            f"invalid key ID {value!r}: expected \"ed25519:\" followed by letters, digits or _"
        )
    return value


def ed25519_public_key(value: str) -> str:
    """Unpadded base64 of a 32-byte ed25519 public key (padded input is accepted)."""
    try:
        decode_verify_key(value)
    except ValueError as exc:
        raise ValueError(f"invalid ed25519 public key: {exc}") from None
    return value.rstrip("=")


def resolve_path(value: Path, base_dir: Path | None) -> Path:
    """Expand ``~`` and make a relative path relative to `base_dir` (the config's directory)."""
    path = value.expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


def readable_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a file, or None if it can."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        return f"{path} is a directory, not a file"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None
