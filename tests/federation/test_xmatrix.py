"""X-Matrix request authentication: header build/parse (RFC 9110 auth-params) and verification."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from federation.signing import SignatureError, signing_key_from_seed
from federation.xmatrix import (
    XMatrixAuth,
    XMatrixError,
    build_authorization_header,
    parse_authorization_header,
    request_signing_json,
    verify_request,
)

ORIGIN = "origin.example.org"
DESTINATION = "destination.example.org"
KEY = signing_key_from_seed(bytes(range(32)), "key1")
URI = "/_matrix/federation/v1/send/txn1?a=b&c=d"
BODY: dict[str, Any] = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {}}]}


def _signed_header(
    method: str = "PUT", uri: str = URI, content: Any | None = BODY, origin: str = ORIGIN
) -> str:
    return build_authorization_header(method, uri, origin, DESTINATION, content, KEY)


def _verify(
    header: str,
    *,
    method: str = "PUT",
    uri: str = URI,
    destination: str = DESTINATION,
    content: Any | None = BODY,
) -> None:
    auth = parse_authorization_header(header)
    verify_request(auth, method, uri, destination, content, KEY.public_key)


# --- building ------------------------------------------------------------------------------


def test_signing_json_has_the_spec_fields_and_content_only_with_a_body() -> None:
    assert request_signing_json("GET", "/x", ORIGIN, DESTINATION, None) == {
        "method": "GET",
        "uri": "/x",
        "origin": ORIGIN,
        "destination": DESTINATION,
    }
    assert request_signing_json("PUT", "/x", ORIGIN, DESTINATION, {})["content"] == {}


def test_header_uses_the_compatible_form_older_servers_expect() -> None:
    header = _signed_header()
    assert header.startswith(
        f'X-Matrix origin="{ORIGIN}",destination="{DESTINATION}",key="ed25519:key1",sig="'
    )
    assert header.endswith('"')
    assert "\\" not in header and ", " not in header


def test_header_round_trips() -> None:
    auth = parse_authorization_header(_signed_header())
    assert auth.origin == ORIGIN
    assert auth.destination == DESTINATION
    assert auth.key_id == "ed25519:key1"
    _verify(_signed_header())


def test_signature_interoperates_with_signedjson() -> None:
    auth = parse_authorization_header(_signed_header())
    signed = request_signing_json("PUT", URI, ORIGIN, DESTINATION, BODY)
    signed["signatures"] = {ORIGIN: {auth.key_id: auth.signature}}
    verify_key = decode_verify_key_bytes(auth.key_id, KEY.public_key)
    verify_signed_json(signed, ORIGIN, verify_key)  # raises if invalid


def test_get_request_without_body_verifies() -> None:
    uri = "/_matrix/federation/v1/state/!r:x?event_id=%24e"
    _verify(_signed_header("GET", uri, None), method="GET", uri=uri, content=None)


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        'X-Matrix origin="o.org",destination="d.org",key="ed25519:k",sig="c2ln"',
        # Unquoted tokens, colons allowed unquoted for older senders.
        "X-Matrix origin=o.org,destination=d.org,key=ed25519:k,sig=c2ln",
        # Case-insensitive scheme and names, any order.
        'x-matrix SIG="c2ln",Key="ed25519:k",DESTINATION="d.org",Origin="o.org"',
        # Whitespace (spaces and tabs) around commas and equals signs, several spaces after scheme.
        'X-Matrix   origin = "o.org" ,\tdestination="d.org" , key ="ed25519:k",  sig= "c2ln"  ',
        # Empty list elements are ignored (RFC 9110 §5.6.1).
        'X-Matrix ,origin="o.org",,destination="d.org",key="ed25519:k",sig="c2ln",',
        # Unknown parameters are ignored.
        'X-Matrix foo="bar, baz",origin="o.org",destination="d.org",key="ed25519:k",sig="c2ln",x=1',
        # Backslash escapes in quoted strings are unescaped.
        'X-Matrix origin="o\\.org",destination="d.org",key="ed25519:\\k",sig="c2\\ln"',
    ],
)
def test_parses_rfc9110_auth_params(header: str) -> None:
    assert parse_authorization_header(header) == XMatrixAuth(
        origin="o.org", destination="d.org", key_id="ed25519:k", signature="c2ln"
    )


def test_destination_is_optional_for_older_servers() -> None:
    auth = parse_authorization_header('X-Matrix origin="o.org",key="ed25519:k",sig="c2ln"')
    assert auth.destination is None


def test_escaped_quote_in_an_unknown_parameter_does_not_end_the_string() -> None:
    auth = parse_authorization_header(
        'X-Matrix note="say \\"hi\\", then go",origin=o.org,key=ed25519:k,sig=c2ln'
    )
    assert auth.origin == "o.org"


def test_origin_and_destination_keep_their_port() -> None:
    auth = parse_authorization_header(
        'X-Matrix origin="o.org:8448",destination="[::1]:8008",key="ed25519:k",sig="c2ln"'
    )
    assert (auth.origin, auth.destination) == ("o.org:8448", "[::1]:8008")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "scheme"),
        ('Bearer origin="o.org",key="ed25519:k",sig="c2ln"', "scheme"),
        ('X-Matrixorigin="o.org",key="ed25519:k",sig="c2ln"', "scheme"),
        ("X-Matrix", "origin"),
        ('X-Matrix key="ed25519:k",sig="c2ln"', "origin"),
        ('X-Matrix origin="o.org",sig="c2ln"', "key"),
        ('X-Matrix origin="o.org",key="ed25519:k"', "sig"),
        ('X-Matrix origin="o.org",key="ed25519:k",sig=""', "signature"),
        ('X-Matrix origin="o.org",key="ed25519:k",sig="c2ln', "unterminated"),
        ('X-Matrix origin="o.org",key="ed25519:k",sig="c2ln\\', "unterminated"),
        ('X-Matrix origin="o.org" key="ed25519:k",sig="c2ln"', "unexpected"),
        ('X-Matrix origin,key="ed25519:k",sig="c2ln"', "no value"),
        ('X-Matrix origin=,key="ed25519:k",sig="c2ln"', "invalid value"),
        ('X-Matrix origin=o/org,key="ed25519:k",sig="c2ln"', "unexpected"),
        ('X-Matrix origin="o.org",origin="p.org",key="ed25519:k",sig="c2ln"', "more than once"),
        ('X-Matrix origin="o.org",ORIGIN="o.org",key="ed25519:k",sig="c2ln"', "more than once"),
        ('X-Matrix origin="bad server!",key="ed25519:k",sig="c2ln"', "invalid origin"),
        ('X-Matrix origin="o.org",destination="",key="ed25519:k",sig="c2ln"', "destination"),
        ('X-Matrix origin="o.org",key="nokeyversion",sig="c2ln"', "key ID"),
        ('X-Matrix origin="o.org",key="ed25519:k",sig="c2\x01ln"', "invalid character"),
        ('X-Matrix ="o.org",key="ed25519:k",sig="c2ln"', "parameter name"),
    ],
)
def test_rejects_malformed_headers(header: str, reason: str) -> None:
    with pytest.raises(XMatrixError, match=reason):
        parse_authorization_header(header)


def test_non_string_header_is_an_error_not_a_crash() -> None:
    with pytest.raises(XMatrixError):
        parse_authorization_header(None)  # type: ignore[arg-type]


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"method": "POST"},
        {"uri": "/_matrix/federation/v1/send/txn2?a=b&c=d"},
        {"uri": "/_matrix/federation/v1/send/txn1?a=b&c=e"},
        {"uri": "/_matrix/federation/v1/send/txn1"},
        {"content": {"pdus": [], "edus": []}},
        {"content": None},
        {"destination": "other.example.org"},
    ],
    ids=["method", "path", "query", "no-query", "body", "no-body", "destination"],
)
def test_tampered_request_fails_verification(change: dict[str, Any]) -> None:
    header = _signed_header()
    with pytest.raises((SignatureError, XMatrixError)):
        _verify(header, **change)


def test_request_for_another_destination_is_refused_even_if_validly_signed() -> None:
    header = build_authorization_header("GET", "/x", ORIGIN, "other.example.org", None, KEY)
    auth = parse_authorization_header(header)
    with pytest.raises(XMatrixError, match=r"other\.example\.org"):
        verify_request(auth, "GET", "/x", DESTINATION, None, KEY.public_key)


def test_claimed_origin_must_be_the_signer() -> None:
    header = _signed_header().replace(f'origin="{ORIGIN}"', 'origin="evil.example.org"')
    with pytest.raises(SignatureError):
        _verify(header)


def test_header_without_destination_is_verified_against_our_name() -> None:
    full = parse_authorization_header(_signed_header())
    legacy = XMatrixAuth(full.origin, None, full.key_id, full.signature)
    verify_request(legacy, "PUT", URI, DESTINATION, BODY, KEY.public_key)
    with pytest.raises(SignatureError):
        verify_request(legacy, "PUT", URI, "other.example.org", BODY, KEY.public_key)


def test_wrong_key_fails_verification() -> None:
    other = signing_key_from_seed(bytes(32), "key1")
    auth = parse_authorization_header(_signed_header())
    with pytest.raises(SignatureError):
        verify_request(auth, "PUT", URI, DESTINATION, BODY, other.public_key)


def test_garbage_signature_is_a_signature_error() -> None:
    auth = XMatrixAuth(ORIGIN, DESTINATION, "ed25519:key1", "not base64!")
    with pytest.raises(SignatureError):
        verify_request(auth, "PUT", URI, DESTINATION, BODY, KEY.public_key)
