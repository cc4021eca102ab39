"""Dot-separated property paths into events (appendices "Dot-separated property paths").

Used by push rule conditions (`key`) and by filters (`event_fields`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final


class _Missing:
    """The property is absent (distinct from a JSON `null`)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@lru_cache(maxsize=4096)
def split_dot_path(path: str) -> tuple[str, ...]:
    """Split `path` into property names.

    A backslash escapes a literal `.` or `\\` inside a name; any other escape sequence is
    kept as-is (`\\x` is a backslash followed by `x`), as the appendix requires.
    """
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


def lookup_path(event: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at `parts` inside `event`, or `MISSING` if any step is absent or not an object."""
    value: Any = event
    for name in parts:
        if not isinstance(value, Mapping) or name not in value:
            return MISSING
        value = value[name]
    return value
