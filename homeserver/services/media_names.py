"""Names and headers of media: `mxc://` parts, file names, content types, and the headers media
is served with (C-S "Content repository", "Security considerations", "Serving inline content").
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, unquote

from federation.ids import is_valid_server_name
from homeserver.errors import MatrixError

# C-S "Matrix Content (mxc://) URIs": the media ID is only [A-Za-z0-9_-].
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_MEDIA_ID_ALPHABET: Final = string.ascii_letters + string.digits
MEDIA_ID_LENGTH: Final = 24  # ~143 bits of randomness: IDs cannot be guessed

MAX_FILENAME_LENGTH: Final = 255
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
# `type/subtype` with optional parameters, printable ASCII only (RFC 2045 tokens, loosely).
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[ -~]*)?")
MAX_CONTENT_TYPE_LENGTH: Final = 255

# C-S "Serving inline content": the only types served with `Content-Disposition: inline`.
INLINE_CONTENT_TYPES: Final = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

# C-S "Content repository": the recommended Content-Security-Policy, plus
# Cross-Origin-Resource-Policy (v1.4) and nosniff so browsers trust only the Content-Type given.
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
        "style-src 'unsafe-inline'; object-src 'self';"
    ),
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}


def new_media_id() -> str:
    return "".join(secrets.choice(_MEDIA_ID_ALPHABET) for _ in range(MEDIA_ID_LENGTH))


def is_valid_media_id(media_id: str) -> bool:
    return _MEDIA_ID.fullmatch(media_id) is not None


def check_mxc_parts(server_name: str, media_id: str) -> None:
    """C-S "Security considerations": a valid server name and a [A-Za-z0-9_-] media ID, or
    404 M_NOT_FOUND (no such media can exist)."""
    if not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
        raise MatrixError(404, "M_NOT_FOUND", "Not a valid mxc:// URI")


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def sanitise_filename(raw: str | None) -> str | None:
    """The file name to keep: its last path component, or 400 M_INVALID_PARAM if it holds
    control characters or is too long. Empty means none."""
    if raw is None:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise MatrixError(400, "M_INVALID_PARAM", "The file name contains control characters")
    if len(name) > MAX_FILENAME_LENGTH:
        raise MatrixError(400, "M_INVALID_PARAM", "The file name is too long")
    return name or None


def filename_from_remote(raw: str | None) -> str | None:
    """A remote server's file name, sanitised the same way; dropped rather than refused."""
    try:
        return sanitise_filename(raw)
    except MatrixError:
        return None


def normalise_content_type(raw: str | None) -> str:
    """The Content-Type to store and serve: the one given when it looks like a media type,
    else application/octet-stream (C-S "downloadContentType": unknown types are served so)."""
    if raw is None:
        return DEFAULT_CONTENT_TYPE
    value = raw.strip()
    if len(value) > MAX_CONTENT_TYPE_LENGTH or _CONTENT_TYPE.fullmatch(value) is None:
        return DEFAULT_CONTENT_TYPE
    return value


def essence(content_type: str) -> str:
    """`image/png; charset=…` → `image/png`."""
    return content_type.split(";", 1)[0].strip().lower()


def content_disposition(content_type: str, filename: str | None) -> str:
    """C-S GET /download: `inline` only for the safe types, else `attachment`; the file name
    given at upload (or in the path) when there is one."""
    kind = "inline" if essence(content_type) in INLINE_CONTENT_TYPES else "attachment"
    if not filename:
        return kind
    if _is_plain_token_safe(filename):
        return f'{kind}; filename="{filename}"'
    # RFC 6266 / RFC 8187: anything else travels percent-encoded as UTF-8.
    return f"{kind}; filename*=utf-8''{quote(filename, safe='')}"


def _is_plain_token_safe(filename: str) -> bool:
    return all(" " <= c <= "~" and c not in '"\\%' for c in filename)


def filename_of_disposition(header: str | None) -> str | None:
    """The file name in a remote server's Content-Disposition (`filename*=` preferred)."""
    if not header:
        return None
    extended = re.search(r"filename\*\s*=\s*([^;]+)", header, re.IGNORECASE)
    if extended:
        value = extended.group(1).strip()
        charset, _, rest = value.partition("''")
        if rest and charset.lower() == "utf-8":
            return filename_from_remote(unquote(rest, errors="replace"))
    plain = re.search(r'filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;\s]+)', header, re.IGNORECASE)
    if plain:
        quoted = plain.group(2)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain.group(1)
        return filename_from_remote(value)
    return None


def served_headers(content_type: str, filename: str | None) -> dict[str, str]:
    """Every header a download response carries besides its length."""
    return {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(content_type, filename),
        **SECURITY_HEADERS,
    }
