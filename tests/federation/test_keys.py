"""Server key responses (`/_matrix/key/v2/server`) and notary responses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes
from signedjson.sign import sign_json as signedjson_sign_json
from signedjson.sign import verify_signed_json

from federation.hashing import encode_base64
from federation.keys import (
    KeyResponseError,
    build_key_query_response,
    build_server_keys,
    parse_and_verify_server_keys,
    parse_key_query_response,
)
from federation.signing import sign_json, signing_key_from_seed

SERVER = "keys.example.org"
KEY = signing_key_from_seed(bytes(range(32)), "a_key")
OLD_KEY = signing_key_from_seed(bytes(range(1, 33)), "old")
NOTARY = "notary.example.org"
NOTARY_KEY = signing_key_from_seed(bytes(range(2, 34)), "n")
VALID_UNTIL = 1_700_000_000_000


def response(**overrides: Any) -> dict[str, Any]:
    body = build_server_keys(
        SERVER, KEY, VALID_UNTIL, {OLD_KEY.key_id: (OLD_KEY.public_key_base64, 1_600_000_000_000)}
    )
    body.update(overrides)
    return body


def test_built_response_has_the_spec_shape() -> None:
    body = response()
    assert body["server_name"] == SERVER
    assert body["valid_until_ts"] == VALID_UNTIL
    assert body["verify_keys"] == {"ed25519:a_key": {"key": KEY.public_key_base64}}
    assert body["old_verify_keys"] == {
        "ed25519:old": {"key": OLD_KEY.public_key_base64, "expired_ts": 1_600_000_000_000}
    }
    assert list(body["signatures"]) == [SERVER]
    assert list(body["signatures"][SERVER]) == ["ed25519:a_key"]


def test_build_then_parse_and_verify() -> None:
    keys = parse_and_verify_server_keys(response(), expected_server_name=SERVER)
    assert keys.server_name == SERVER
    assert keys.valid_until_ts == VALID_UNTIL
    assert dict(keys.verify_keys) == {"ed25519:a_key": KEY.public_key}
    assert dict(keys.old_verify_keys) == {"ed25519:old": (OLD_KEY.public_key, 1_600_000_000_000)}


def test_our_response_verifies_with_signedjson() -> None:
    body = response()
    verify_key = decode_verify_key_bytes(KEY.key_id, KEY.public_key)
    verify_signed_json(body, SERVER, verify_key)  # raises if invalid


def test_a_response_signed_by_signedjson_parses() -> None:
    signing_key = decode_signing_key(KEY.seed, "a_key")
    body = {
        "server_name": SERVER,
        "valid_until_ts": VALID_UNTIL,
        "verify_keys": {KEY.key_id: {"key": KEY.public_key_base64}},
    }
    signed = signedjson_sign_json(copy.deepcopy(body), SERVER, signing_key)
    keys = parse_and_verify_server_keys(signed, SERVER)
    assert keys.verify_keys[KEY.key_id] == KEY.public_key
    assert dict(keys.old_verify_keys) == {}


def decode_signing_key(seed: bytes, version: str) -> Any:
    return decode_signing_key_base64("ed25519", version, encode_base64(seed))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.update(valid_until_ts=VALID_UNTIL + 1),
        lambda b: b["verify_keys"].update({"ed25519:x": {"key": OLD_KEY.public_key_base64}}),
        lambda b: b["old_verify_keys"]["ed25519:old"].update(expired_ts=1),
        lambda b: b["verify_keys"]["ed25519:a_key"].update(key=OLD_KEY.public_key_base64),
        lambda b: b.update(signatures={}),
        lambda b: b.pop("signatures"),
        lambda b: b["signatures"].update({SERVER: {"ed25519:a_key": "AAAA"}}),
    ],
    ids=[
        "valid-until",
        "extra-unsigned-key",
        "old-key-expiry",
        "swapped-key",
        "no-signatures",
        "signatures-missing",
        "bad-signature",
    ],
)
def test_tampered_response_is_rejected(tamper: Any) -> None:
    body = response()
    tamper(body)
    with pytest.raises(KeyResponseError):
        parse_and_verify_server_keys(body, SERVER)


def test_response_signed_by_someone_else_is_rejected() -> None:
    body = response()
    del body["signatures"]
    body = sign_json(body, SERVER, OLD_KEY)  # a key the response does not list
    with pytest.raises(KeyResponseError, match="self-signed"):
        parse_and_verify_server_keys(body, SERVER)


def test_response_for_another_server_is_rejected() -> None:
    with pytest.raises(KeyResponseError, match=r"not 'other\.example\.org'"):
        parse_and_verify_server_keys(response(), expected_server_name="other.example.org")


def test_every_listed_key_must_sign() -> None:
    body = build_server_keys(SERVER, KEY, VALID_UNTIL)
    del body["signatures"]
    body["verify_keys"][OLD_KEY.key_id] = {"key": OLD_KEY.public_key_base64}
    only_one = sign_json(body, SERVER, KEY)
    with pytest.raises(KeyResponseError, match="ed25519:old"):
        parse_and_verify_server_keys(only_one, SERVER)
    both = sign_json(only_one, SERVER, OLD_KEY)
    assert set(parse_and_verify_server_keys(both, SERVER).verify_keys) == {
        KEY.key_id,
        OLD_KEY.key_id,
    }


def test_keys_of_unknown_algorithms_are_left_out() -> None:
    body = build_server_keys(SERVER, KEY, VALID_UNTIL)
    del body["signatures"]
    body["verify_keys"]["future:1"] = {"key": "whatever"}
    keys = parse_and_verify_server_keys(sign_json(body, SERVER, KEY), SERVER)
    assert set(keys.verify_keys) == {KEY.key_id}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        ({**response(), "server_name": 3}, "server_name"),
        ({**response(), "server_name": "bad name!"}, "server_name"),
        ({**response(), "valid_until_ts": "soon"}, "valid_until_ts"),
        ({**response(), "valid_until_ts": True}, "valid_until_ts"),
        ({**response(), "verify_keys": []}, "verify_keys"),
        ({**response(), "verify_keys": {}}, "no ed25519"),
        ({**response(), "verify_keys": {"ed25519:a-b": {"key": "AAAA"}}}, "invalid key ID"),
        ({**response(), "verify_keys": {"ed25519:k": {}}}, "has no key"),
        ({**response(), "verify_keys": {"ed25519:k": {"key": "AAAA"}}}, "32 bytes"),
        ({**response(), "verify_keys": {"ed25519:k": {"key": "!!"}}}, "ed25519:k"),
        (
            {**response(), "old_verify_keys": {"ed25519:o": {"key": KEY.public_key_base64}}},
            "expired_ts",
        ),
        ({**response(), "old_verify_keys": "none"}, "old_verify_keys"),
    ],
)
def test_malformed_responses_give_clear_errors(body: Any, reason: str) -> None:
    with pytest.raises(KeyResponseError, match=reason):
        parse_and_verify_server_keys(body)


def test_notary_response_round_trip() -> None:
    notarised = sign_json(response(), NOTARY, NOTARY_KEY)
    entries = parse_key_query_response(build_key_query_response([notarised]))
    assert len(entries) == 1
    keys = parse_and_verify_server_keys(entries[0], SERVER)  # still self-signed
    assert keys.verify_keys[KEY.key_id] == KEY.public_key
    verify_key = decode_verify_key_bytes(NOTARY_KEY.key_id, NOTARY_KEY.public_key)
    verify_signed_json(dict(entries[0]), NOTARY, verify_key)


def test_empty_notary_response_is_valid() -> None:
    assert parse_key_query_response({"server_keys": []}) == []


@pytest.mark.parametrize("body", [None, {}, {"server_keys": {}}, {"server_keys": [1]}])
def test_malformed_notary_response_is_rejected(body: Any) -> None:
    with pytest.raises(KeyResponseError):
        parse_key_query_response(body)
