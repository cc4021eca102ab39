"""The X-Matrix `Authorization` header: build, parse, verify.

Spec: S2S "Request Authentication". The request method, target (path and query), origin,
destination and JSON body are wrapped in an object, signed with the JSON signing algorithm,
and the signature travels in `Authorization: X-Matrix origin=…,destination=…,key=…,sig=…`.
The header grammar is RFC 9110 §11.4 (credentials / auth-param) and §5.6 (token,
quoted-string, lists).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_server_name
from federation.signing import SigningKey, sign_json, verify_json

AUTH_SCHEME: Final = "X-Matrix"

# RFC 9110 §5.6.2: tchar. The spec adds, for old senders, that ':' is accepted unquoted.
_TCHARS: Final = frozenset("!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters)
_UNQUOTED_VALUE_CHARS: Final = _TCHARS | {":"}
_WHITESPACE: Final = " \t"


class XMatrixError(ValueError):
    """The X-Matrix header is missing, malformed, or does not match the request (401)."""


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    """The parameters of one X-Matrix `Authorization` header."""

    origin: str
    # Optional on receipt for servers older than v1.3; always sent by us.
    destination: str | None
    key_id: str
    signature: str


def request_signing_json(
    method: str, uri: str, origin: str, destination: str, content: Any | None
) -> dict[str, Any]:
    """The object whose signature authenticates a request (S2S "Request Authentication").

    `uri` is the request target as sent: the path from `/_matrix/…`, with `?` and the query
    string if there is one, and no scheme or host. `content` is the parsed JSON body, or None
    when the request has no body.
    """
    request_json: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        request_json["content"] = content
    return request_json


def build_authorization_header(
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any | None,
    key: SigningKey,
) -> str:
    """Sign a request and render its `Authorization` header value.

    For compatibility with older servers (S2S "Request Authentication") we send one space after
    the scheme, lower-case names, no whitespace around commas, and no backslashes.
    """
    signed = sign_json(request_signing_json(method, uri, origin, destination, content), origin, key)
    signature = signed["signatures"][origin][key.key_id]
    params = (
        ("origin", origin),
        ("destination", destination),
        ("key", key.key_id),
        ("sig", signature),
    )
    for name, value in params:
        if '"' in value or "\\" in value or not value.isprintable():
            raise XMatrixError(f"{name} {value!r} cannot be sent in an X-Matrix header")
    rendered = ",".join(f'{name}="{value}"' for name, value in params)
    return f"{AUTH_SCHEME} {rendered}"


def parse_authorization_header(value: str) -> XMatrixAuth:
    """Parse an `Authorization` header value with the X-Matrix scheme.

    RFC 9110 §11.4: `auth-scheme 1*SP #auth-param`, where `auth-param = token BWS "=" BWS
    ( token / quoted-string )`. Scheme and parameter names are case-insensitive; quoted values
    are unescaped; unknown parameters are ignored; a repeated parameter is an error.
    """
    if not isinstance(value, str):
        raise XMatrixError("Authorization header must be a string")
    scheme, _, rest = value.strip(_WHITESPACE).partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower():
        raise XMatrixError(f"unsupported authorization scheme {scheme!r}")
    params = _parse_auth_params(rest)
    try:
        origin, key_id, signature = params["origin"], params["key"], params["sig"]
    except KeyError as e:
        raise XMatrixError(f"X-Matrix header has no {e.args[0]!r} parameter") from None
    destination = params.get("destination")
    if not is_valid_server_name(origin):
        raise XMatrixError(f"invalid origin {origin!r}")
    if destination is not None and not is_valid_server_name(destination):
        raise XMatrixError(f"invalid destination {destination!r}")
    algorithm, colon, version = key_id.partition(":")
    if not (algorithm and colon and version):
        raise XMatrixError(f"invalid key ID {key_id!r}")
    if not signature:
        raise XMatrixError("empty signature")
    return XMatrixAuth(origin=origin, destination=destination, key_id=key_id, signature=signature)


def verify_request(
    auth: XMatrixAuth,
    method: str,
    uri: str,
    destination: str,
    content: Any | None,
    verify_key: bytes,
) -> None:
    """Check that `auth` signs this request to `destination` (our server name).

    `verify_key` is the raw public key of `auth.origin` for `auth.key_id`, fetched by the
    caller. Raises XMatrixError for a destination mismatch and SignatureError for a bad
    signature.
    """
    # S2S "Request Authentication": a destination that is not ours must be refused (401).
    if auth.destination is not None and auth.destination != destination:
        raise XMatrixError(
            f"request is for {auth.destination!r}, but this server is {destination!r}"
        )
    signed = request_signing_json(method, uri, auth.origin, destination, content)
    signed["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
    verify_json(signed, auth.origin, auth.key_id, verify_key)


def _parse_auth_params(text: str) -> dict[str, str]:
    """Parse `#auth-param`: a comma-separated list, empty elements allowed (RFC 9110 §5.6.1)."""
    params: dict[str, str] = {}
    pos = _skip_whitespace(text, 0)
    while pos < len(text):
        if text[pos] == ",":
            pos = _skip_whitespace(text, pos + 1)
            continue
        name, pos = _read_token(text, pos, _TCHARS)
        if not name:
            raise XMatrixError(f"expected a parameter name at position {pos}")
        pos = _skip_whitespace(text, pos)
        if pos >= len(text) or text[pos] != "=":
            raise XMatrixError(f"parameter {name!r} has no value")
        pos = _skip_whitespace(text, pos + 1)
        if pos < len(text) and text[pos] == '"':
            param_value, pos = _read_quoted_string(text, pos)
        else:
            param_value, pos = _read_token(text, pos, _UNQUOTED_VALUE_CHARS)
            if not param_value:
                raise XMatrixError(f"parameter {name!r} has an empty or invalid value")
        pos = _skip_whitespace(text, pos)
        if pos < len(text) and text[pos] != ",":
            raise XMatrixError(f"unexpected {text[pos]!r} after parameter {name!r}")
        key = name.lower()
        if key in params:
            # RFC 9110 §11.2: each parameter name MUST only occur once.
            raise XMatrixError(f"parameter {key!r} given more than once")
        params[key] = param_value
    return params


def _skip_whitespace(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _read_token(text: str, pos: int, allowed: frozenset[str]) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] in allowed:
        pos += 1
    return text[start:pos], pos


def _read_quoted_string(text: str, pos: int) -> tuple[str, int]:
    """RFC 9110 §5.6.4: `DQUOTE *( qdtext / quoted-pair ) DQUOTE`; `\\x` stands for `x`."""
    chars: list[str] = []
    pos += 1  # opening quote
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            pos += 1
            if pos >= len(text):
                break
            char = text[pos]
        if not _is_qdtext_or_pair_char(char):
            raise XMatrixError(f"invalid character {char!r} in quoted string")
        chars.append(char)
        pos += 1
    raise XMatrixError("unterminated quoted string")


def _is_qdtext_or_pair_char(char: str) -> bool:
    # HTAB, SP, visible ASCII and obs-text (%x80-FF); control characters are not allowed.
    code = ord(char)
    return char == "\t" or 0x20 <= code <= 0x7E or code >= 0x80
