"""Canonical JSON and the JSON value rules of each room version.

Spec: appendices "Canonical JSON" (encoding and grammar); `rooms/fragments/v1-canonical-json.md`
(v1–v5: do not strictly enforce) and `v6-canonical-json.md` (v6+: integers within
±(2^53−1), no floats — a client gets 400 `M_BAD_JSON`, a remote PDU is dropped).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

# Appendices "Canonical JSON": integers must be in [-(2**53)+1, (2**53)-1].
CANONICALJSON_MAX_INT: Final = 2**53 - 1
CANONICALJSON_MIN_INT: Final = -CANONICALJSON_MAX_INT
# Not from the spec: a bound on nesting so hostile input cannot exhaust the stack.
MAX_NESTING_DEPTH: Final = 100


class CanonicalJsonError(ValueError):
    """The value cannot be (or may not be) represented as canonical JSON."""


def _to_plain(value: object) -> object:
    """`default=` hook: read-only mappings and tuples-like sequences encode as JSON too."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return list(value)
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


# Appendices "Canonical JSON": the shortest UTF-8 encoding with keys sorted by code point.
# Non-ASCII code points are written as UTF-8, control characters use the short escapes or
# `\u00XX` (lower-case hex), exactly as the appendix grammar says.
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    sort_keys=True,
    default=_to_plain,
)


def encode_canonical_json(obj: Any) -> bytes:
    """Encode `obj` as canonical JSON bytes.

    Floats are written the way Python's `json` (and so Synapse's `canonicaljson`) writes them,
    which is what the content hashes of old (v1–v5) events were computed over; the v6+ rules
    that forbid floats are applied by `check_json_values`/`parse_json`, not here.
    """
    try:
        text = _ENCODER.encode(obj)
    except (TypeError, ValueError) as e:
        raise CanonicalJsonError(f"cannot encode as canonical JSON: {e}") from None
    except RecursionError:
        raise CanonicalJsonError("JSON nested too deeply") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJsonError("string contains a lone surrogate (invalid Unicode)") from None


def check_json_values(obj: Any, *, strict: bool) -> None:
    """Raise `CanonicalJsonError` if `obj` holds a value canonical JSON does not allow.

    Always rejected: NaN/Infinity, non-string keys and non-JSON types. When `strict` (room
    version 6 and later): floats of any value (including `1.0` and `-0.0`) and integers
    outside ±(2^53−1).
    """
    kind = type(obj)
    if kind is dict or kind is list:
        _check_container(obj, 1, strict)
    else:
        _check_any(obj, 1, strict)


def _check_container(container: dict[Any, Any] | list[Any], depth: int, strict: bool) -> None:
    """The common case, plain dicts, lists, strings and integers, without the generic walk
    (a received event is checked on every receipt); anything else goes to `_check_any`."""
    if depth > MAX_NESTING_DEPTH:
        raise CanonicalJsonError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels")
    if type(container) is dict:
        for key in container:
            if type(key) is not str and not isinstance(key, str):
                raise CanonicalJsonError(f"object key {key!r} is not a string")
        values: Any = container.values()
    else:
        values = container
    for value in values:
        kind = type(value)
        if kind is str:
            continue
        if kind is int:
            if strict and not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
                raise CanonicalJsonError(f"integer {value} is outside ±(2^53-1)")
        elif kind is dict or kind is list:
            _check_container(value, depth + 1, strict)
        else:
            _check_any(value, depth + 1, strict)


def _check_any(obj: Any, depth: int, strict: bool) -> None:
    """Every JSON value rule, for any Python value found at `depth` (the root is 1)."""
    stack: list[tuple[object, int]] = [(obj, depth)]
    while stack:
        value, depth = stack.pop()
        if value is None or isinstance(value, bool | str):
            continue
        if isinstance(value, int):
            if strict and not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
                raise CanonicalJsonError(f"integer {value} is outside ±(2^53-1)")
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CanonicalJsonError(f"{value} is not a JSON number")
            if strict:
                raise CanonicalJsonError(f"float {value!r} is not allowed; use an integer")
            continue
        if depth > MAX_NESTING_DEPTH:
            raise CanonicalJsonError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise CanonicalJsonError(f"object key {key!r} is not a string")
                stack.append((item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1) for item in value)
        else:
            raise CanonicalJsonError(f"a {type(value).__name__} is not a JSON value")


def _reject_constant(name: str) -> None:
    raise CanonicalJsonError(f"{name} is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CanonicalJsonError(f"duplicate key {key!r} in JSON object")
        result[key] = value
    return result


def _check_strings(obj: Any) -> None:
    """Reject lone surrogates (written as `\\ud800` escapes) in keys and string values."""
    stack: list[Any] = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            _check_string(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_string(key)
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)


def _check_string(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJsonError("string contains a lone surrogate (invalid Unicode)") from None


def parse_json(data: bytes | str, *, strict: bool) -> Any:
    """Parse JSON text received from a client or a server.

    Rejects invalid UTF-8, lone surrogates, duplicate keys, NaN/Infinity, nesting deeper than
    `MAX_NESTING_DEPTH`, and — when `strict` (room v6+, and every new API body) — floats and
    integers outside ±(2^53−1). Raises `CanonicalJsonError` with the reason.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CanonicalJsonError(f"invalid UTF-8 at byte {e.start}") from None
    elif isinstance(data, str):
        text = data
    else:
        raise CanonicalJsonError(f"cannot parse a {type(data).__name__} as JSON")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
        )
    except CanonicalJsonError:
        raise
    except RecursionError:
        raise CanonicalJsonError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels") from None
    except ValueError as e:  # json.JSONDecodeError, or an integer with too many digits
        raise CanonicalJsonError(f"invalid JSON: {e}") from None
    _check_strings(value)
    check_json_values(value, strict=strict)
    return value
