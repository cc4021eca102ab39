"""The spec's own test values, byte for byte (appendices "Cryptographic Test Vectors" and the
canonical JSON examples)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.canonical_json import encode_canonical_json, parse_json
from federation.hashing import check_content_hash, decode_base64
from federation.room_versions import V1
from federation.signing import (
    add_hashes_and_signatures,
    sign_json,
    signing_key_from_seed,
    verify_event_signature,
    verify_json,
)

SIGNING_KEY_SEED = decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
SERVER_NAME = "domain"
KEY_ID = "ed25519:1"
KEY = signing_key_from_seed(SIGNING_KEY_SEED, "1")


def test_signing_key_seed_is_32_bytes_and_key_id_matches_the_vectors() -> None:
    assert len(SIGNING_KEY_SEED) == 32
    assert KEY.key_id == KEY_ID


def test_signing_an_empty_object() -> None:
    assert sign_json({}, SERVER_NAME, KEY) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV"
                "/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_signing_an_object_with_data() -> None:
    assert sign_json({"one": 1, "two": "Two"}, SERVER_NAME, KEY) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6"
                "kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


def test_json_vectors_verify_with_the_derived_public_key() -> None:
    for obj in ({}, {"one": 1, "two": "Two"}):
        verify_json(sign_json(obj, SERVER_NAME, KEY), SERVER_NAME, KEY_ID, KEY.public_key)


MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}

SIGNED_MINIMAL_EVENT: dict[str, Any] = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAW"
            "bOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}

MESSAGE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}

SIGNED_MESSAGE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eY"
            "HYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}


@pytest.mark.parametrize(
    ("event", "expected"),
    [(MINIMAL_EVENT, SIGNED_MINIMAL_EVENT), (MESSAGE_EVENT, SIGNED_MESSAGE_EVENT)],
    ids=["minimal", "message"],
)
def test_event_signing_vectors(event: dict[str, Any], expected: dict[str, Any]) -> None:
    signed = add_hashes_and_signatures(event, V1, SERVER_NAME, KEY)
    assert signed == expected
    assert encode_canonical_json(signed) == encode_canonical_json(expected)
    assert check_content_hash(signed)
    verify_event_signature(signed, V1, SERVER_NAME, KEY_ID, KEY.public_key)


AUTH_EXAMPLE = """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {"medium": "email", "address": "john.doe@example.org"},
                {"medium": "msisdn", "address": "123456789"}
            ]
        }
    }
}"""


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("{}", "{}"),
        ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
        ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
        ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
        (
            AUTH_EXAMPLE,
            '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
            '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
            '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
        ),
        ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
        ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
        ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
        ('{\n    "a": null\n}', '{"a":null}'),
    ],
)
def test_canonical_json_examples(source: str, canonical: str) -> None:
    assert encode_canonical_json(parse_json(source, strict=True)) == canonical.encode("utf-8")


def test_canonical_json_example_with_negative_zero_and_exponent() -> None:
    # The appendix gives {"a": -0, "b": 1e10} → {"a":0,"b":10000000000}: the values are the
    # integers 0 and 10^10. As JSON text `1e10` is a float (rejected by strict parsing), so the
    # example is checked on the values it stands for.
    assert encode_canonical_json({"a": -0, "b": 10**10}) == b'{"a":0,"b":10000000000}'
    assert parse_json('{"a": -0}', strict=True) == {"a": 0}
    assert json.loads('{"a": -0, "b": 1e10}')["b"] == 10**10
