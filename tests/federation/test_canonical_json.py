"""Canonical JSON encoding and the strict (v6+) and lenient (v1–v5) JSON rules."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.canonical_json import (
    CANONICALJSON_MAX_INT,
    CanonicalJsonError,
    check_json_values,
    encode_canonical_json,
    parse_json,
)

# Strings without lone surrogates: everything canonical JSON can carry.
json_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
json_ints = st.integers(min_value=-CANONICALJSON_MAX_INT, max_value=CANONICALJSON_MAX_INT)
json_values = st.recursive(
    st.none() | st.booleans() | json_ints | json_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_canonical_json_round_trips(value: Any) -> None:
    encoded = encode_canonical_json(value)
    assert parse_json(encoded, strict=True) == value
    assert encode_canonical_json(parse_json(encoded, strict=True)) == encoded


@given(json_values)
def test_canonical_json_is_the_shortest_sorted_utf8_encoding(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode_canonical_json(value) == expected.encode("utf-8")


@given(st.dictionaries(json_text, json_ints, min_size=2, max_size=8))
def test_key_order_of_the_input_does_not_matter(value: dict[str, int]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert encode_canonical_json(reversed_value) == encode_canonical_json(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_strict_parsing_rejects_every_float(number: float) -> None:
    with pytest.raises(CanonicalJsonError, match="float"):
        parse_json(json.dumps({"n": number}), strict=True)


@given(
    st.integers(min_value=CANONICALJSON_MAX_INT + 1)
    | st.integers(max_value=-CANONICALJSON_MAX_INT - 1)
)
def test_strict_parsing_rejects_integers_out_of_range(number: int) -> None:
    with pytest.raises(CanonicalJsonError, match="outside"):
        parse_json(json.dumps([number]), strict=True)


def test_integer_range_bounds_are_inclusive() -> None:
    assert parse_json(f"[{2**53 - 1}, {-(2**53) + 1}]", strict=True) == [2**53 - 1, -(2**53) + 1]
    with pytest.raises(CanonicalJsonError):
        parse_json(f"[{2**53}]", strict=True)
    with pytest.raises(CanonicalJsonError):
        parse_json(f"[{-(2**53)}]", strict=True)


def test_lenient_parsing_accepts_floats_and_big_integers() -> None:
    assert parse_json('{"a": 1.5, "b": 9007199254740993}', strict=False) == {
        "a": 1.5,
        "b": 9007199254740993,
    }


@pytest.mark.parametrize("text", ["1.0", "-0.0", "1e10", "0.5"])
def test_integral_and_negative_zero_floats_are_still_floats_when_strict(text: str) -> None:
    with pytest.raises(CanonicalJsonError):
        parse_json(f'{{"a": {text}}}', strict=True)
    assert isinstance(parse_json(f'{{"a": {text}}}', strict=False)["a"], float)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', "[1e400]"])
def test_nan_and_infinity_are_always_rejected(text: str, strict: bool) -> None:
    with pytest.raises(CanonicalJsonError, match="not a JSON number"):
        parse_json(text, strict=strict)


@pytest.mark.parametrize("strict", [True, False])
def test_duplicate_keys_are_rejected(strict: bool) -> None:
    with pytest.raises(CanonicalJsonError, match="duplicate key 'a'"):
        parse_json('{"a": 1, "b": {"a": 2}, "a": 3}', strict=strict)


def test_duplicate_keys_in_nested_objects_are_rejected() -> None:
    with pytest.raises(CanonicalJsonError, match="duplicate"):
        parse_json('{"x": [{"k": 1, "k": 1}]}', strict=True)


@pytest.mark.parametrize("data", [b'{"a": "\xff"}', b'{"a": "\xc3"}', b'{"a": "\xed\xa0\x80"}'])
def test_invalid_utf8_is_rejected(data: bytes) -> None:
    with pytest.raises(CanonicalJsonError, match="UTF-8"):
        parse_json(data, strict=False)


@pytest.mark.parametrize("text", ['{"a": "\\ud800"}', '{"\\udc00": 1}', '["x\\udbff"]'])
def test_lone_surrogate_escapes_are_rejected(text: str) -> None:
    with pytest.raises(CanonicalJsonError, match="surrogate"):
        parse_json(text, strict=False)


def test_surrogate_pairs_are_one_code_point() -> None:
    assert parse_json('{"a": "\\ud83d\\ude00"}', strict=True) == {"a": "😀"}
    assert encode_canonical_json({"a": "😀"}) == '{"a":"😀"}'.encode()


def test_nesting_is_limited_to_100_levels() -> None:
    assert parse_json("[" * 100 + "]" * 100, strict=True) is not None
    with pytest.raises(CanonicalJsonError, match="nested"):
        parse_json("[" * 101 + "]" * 101, strict=True)
    with pytest.raises(CanonicalJsonError, match="nested"):
        parse_json('{"a":' * 150 + "1" + "}" * 150, strict=False)


def test_hostile_nesting_depth_gives_a_clear_error() -> None:
    with pytest.raises(CanonicalJsonError, match="nested"):
        parse_json("[" * 100_000 + "]" * 100_000, strict=False)


@pytest.mark.parametrize("text", ["", "{", '{"a":1,}', "[1 2]", "{'a': 1}", '{"a": 01}', "nul"])
def test_malformed_json_gives_a_clear_error(text: str) -> None:
    with pytest.raises(CanonicalJsonError, match="invalid JSON"):
        parse_json(text, strict=False)


def test_parse_rejects_non_text_input() -> None:
    with pytest.raises(CanonicalJsonError):
        parse_json(12, strict=True)  # type: ignore[arg-type]


def test_control_characters_use_the_grammars_escapes() -> None:
    value = {"s": '\x00\x08\t\n\x0b\x0c\r\x1f"\\\x7f/'}
    expected = b'{"s":"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\\"\\\\\x7f/"}'
    assert encode_canonical_json(value) == expected


def test_keys_sort_by_code_point() -> None:
    value = {"b": 1, "B": 2, "é": 3, "a": 4, "日": 5, "😀": 6, "\uffff": 7}
    expected = '{"B":2,"a":4,"b":1,"é":3,"日":5,"\uffff":7,"😀":6}'
    assert encode_canonical_json(value) == expected.encode()


def test_read_only_mappings_and_tuples_encode_like_dicts_and_lists() -> None:
    value = MappingProxyType({"b": (1, 2), "a": MappingProxyType({"c": None})})
    assert encode_canonical_json(value) == b'{"a":{"c":null},"b":[1,2]}'


@pytest.mark.parametrize(
    "value",
    [{"a": float("nan")}, {"a": float("inf")}, {"a": b"bytes"}, {"a": {1, 2}}, {"a": object()}],
)
def test_encoding_rejects_what_json_cannot_hold(value: Any) -> None:
    with pytest.raises(CanonicalJsonError):
        encode_canonical_json(value)


def test_encoding_rejects_lone_surrogates() -> None:
    with pytest.raises(CanonicalJsonError, match="surrogate"):
        encode_canonical_json({"a": "\ud800"})


def test_lenient_encoding_writes_floats_like_python_json() -> None:
    # v1–v5 events may hold floats; their hashes were computed over this form.
    assert encode_canonical_json({"a": 1.5, "b": 1.0}) == b'{"a":1.5,"b":1.0}'


@pytest.mark.parametrize(
    ("value", "strict_ok"),
    [
        ({"a": [1, "x", None, True, {"b": -(2**53) + 1}]}, True),
        ({"a": 2**53}, False),
        ({"a": [0.0]}, False),
        ({"a": (1, 2)}, True),
    ],
)
def test_check_json_values(value: Any, strict_ok: bool) -> None:
    check_json_values(value, strict=False)
    if strict_ok:
        check_json_values(value, strict=True)
    else:
        with pytest.raises(CanonicalJsonError):
            check_json_values(value, strict=True)


@pytest.mark.parametrize("value", [{"a": float("nan")}, {2: 1}, {"a": object()}, [b"x"]])
def test_check_json_values_rejects_non_json_even_when_lenient(value: Any) -> None:
    with pytest.raises(CanonicalJsonError):
        check_json_values(value, strict=False)


def test_check_json_values_limits_nesting() -> None:
    deep: Any = 1
    for _ in range(101):
        deep = [deep]
    with pytest.raises(CanonicalJsonError, match="nested"):
        check_json_values(deep, strict=False)
    check_json_values(deep[0], strict=True)


def test_booleans_are_not_integers_out_of_range() -> None:
    check_json_values({"t": True, "f": False}, strict=True)
    assert encode_canonical_json([True, False]) == b"[true,false]"
