"""`check_json_values` takes a fast path for plain dicts, lists, strings and integers; it must
decide exactly as the generic walk does for every value (federation/canonical_json.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.canonical_json import (
    MAX_NESTING_DEPTH,
    CanonicalJsonError,
    _check_any,
    check_json_values,
)

_scalars = (
    st.none()
    | st.booleans()
    | st.text(max_size=5)
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=20,
)


def _verdict(check: Any, value: Any, strict: bool) -> str | None:
    try:
        check(value, strict)
    except CanonicalJsonError as exc:
        return type(exc).__name__
    return None


@given(_values, st.booleans())
def test_the_fast_path_decides_like_the_generic_walk(value: Any, strict: bool) -> None:
    fast = _verdict(lambda v, s: check_json_values(v, strict=s), value, strict)
    generic = _verdict(lambda v, s: _check_any(v, 1, s), value, strict)
    assert fast == generic


def _nested(depth: int, innermost: Any) -> Any:
    value = innermost
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


def test_nesting_is_limited_on_the_fast_path_too() -> None:
    check_json_values(_nested(MAX_NESTING_DEPTH, {}), strict=True)
    with pytest.raises(CanonicalJsonError, match="nested deeper"):
        check_json_values(_nested(MAX_NESTING_DEPTH + 1, {}), strict=True)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, {"b": 1.5}]},
        {"a": {"b": 2**53}},
        {"a": [{1: "x"}]},
        {"a": [float("nan")]},
        {"a": {"b": object()}},
    ],
)
def test_bad_values_deep_inside_plain_containers_are_found(value: Any) -> None:
    with pytest.raises(CanonicalJsonError):
        check_json_values(value, strict=True)
