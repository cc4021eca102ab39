"""Typed fields of a JSON request body, with the spec's errors for wrong ones.

Missing required key → 400 `M_MISSING_PARAM`; wrong JSON type → 400 `M_BAD_JSON`
(C-S "Common error codes").
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError


def _wrong_type(key: str, expected: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", f"'{key}' must be {expected}")


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong_type(key, "a string")
    return value


def required_str(body: dict[str, Any], key: str) -> str:
    value = optional_str(body, key)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{key}'")
    return value


def optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong_type(key, "a boolean")
    return value


def required_str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{key}'")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _wrong_type(key, "a list of strings")
    return value
