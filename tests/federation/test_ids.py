"""Identifier grammar: server names, user IDs, room IDs, event IDs, room aliases."""

from __future__ import annotations

import pytest

from federation.ids import (
    is_valid_event_id,
    is_valid_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    localpart_of,
    parse_server_name,
    server_name_of,
)

HASH43 = "Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"  # from v4-event-ids.md


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("matrix.org", ("matrix.org", None)),
        ("matrix.org:8888", ("matrix.org", 8888)),
        ("1.2.3.4", ("1.2.3.4", None)),
        ("1.2.3.4:1234", ("1.2.3.4", 1234)),
        ("[1234:5678::abcd]", ("[1234:5678::abcd]", None)),
        ("[1234:5678::abcd]:5678", ("[1234:5678::abcd]", 5678)),
        ("[::1]", ("[::1]", None)),
        ("[::ffff:1.2.3.4]:8448", ("[::ffff:1.2.3.4]", 8448)),
        ("localhost", ("localhost", None)),
        ("MATRIX.ORG", ("MATRIX.ORG", None)),
        ("a-b.example", ("a-b.example", None)),
        ("x:0", ("x", 0)),
        ("x:99999", ("x", 99999)),
    ],
)
def test_parse_valid_server_names(name: str, expected: tuple[str, int | None]) -> None:
    assert parse_server_name(name) == expected
    assert is_valid_server_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:-1",
        "matrix.org:80a",
        "matrix.org:80:80",
        "under_score.org",
        "spa ce.org",
        "ünicode.org",
        "1.2.3.256",
        "[1234:5678::abcd",
        "[1234:5678::abcd]x",
        "[not-ipv6]",
        "[1::2::3]",
        "[fe80::1%eth0]",
        "[]",
        "1234:5678::abcd",
        "a" * 256,
    ],
)
def test_invalid_server_names_are_rejected(name: str) -> None:
    assert not is_valid_server_name(name)
    with pytest.raises(ValueError):
        parse_server_name(name)


def test_dns_names_up_to_255_characters_are_valid() -> None:
    assert is_valid_server_name("a" * 255)


def test_server_name_must_be_a_string() -> None:
    assert not is_valid_server_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "user_id",
    [
        "@alice:example.org",
        "@a.b-c=d_e/f+g:example.org:8448",
        "@0:1.2.3.4",
        "@bob:[::1]:8448",
    ],
)
def test_valid_user_ids(user_id: str) -> None:
    assert is_valid_user_id(user_id)
    assert is_valid_user_id(user_id, historical=True)


@pytest.mark.parametrize(
    "user_id",
    ["@Alice:example.org", "@al ice:example.org", "@a#b:example.org", "@:example.org", "@ü:x.org"],
)
def test_historical_user_ids_are_valid_only_when_historical(user_id: str) -> None:
    assert not is_valid_user_id(user_id)
    assert is_valid_user_id(user_id, historical=True)


@pytest.mark.parametrize(
    "user_id",
    [
        "alice:example.org",
        "@alice",
        "@alice:",
        "@alice:bad_server",
        "@a\x00b:example.org",
        "@a\ud800:example.org",
        "#alice:example.org",
        "",
    ],
)
def test_invalid_user_ids_even_when_historical(user_id: str) -> None:
    assert not is_valid_user_id(user_id)
    assert not is_valid_user_id(user_id, historical=True)


def test_user_id_localpart_ends_at_the_first_colon() -> None:
    # `@a:b:c` is localpart `a` on server `b:c` — invalid as `c` is not a port.
    assert not is_valid_user_id("@a:b:c", historical=True)
    assert is_valid_user_id("@a:b:1", historical=True)


def test_user_id_limit_is_255_bytes() -> None:
    server = ":example.org"
    exactly = "@" + "a" * (255 - 1 - len(server)) + server
    assert len(exactly.encode()) == 255
    assert is_valid_user_id(exactly)
    assert not is_valid_user_id("@a" + exactly[1:])


def test_user_id_limit_counts_utf8_bytes_not_characters() -> None:
    server = ":example.org"
    # "é" is two bytes: 121 of them are 242 bytes, with "@" and the server 255 bytes.
    exactly = "@" + "é" * 121 + server
    assert len(exactly.encode()) == 255
    assert is_valid_user_id(exactly, historical=True)
    assert not is_valid_user_id("@é" + exactly[1:], historical=True)


def test_localparts() -> None:
    assert is_valid_localpart("a.b_c=d-e/f+0")
    assert not is_valid_localpart("")
    assert not is_valid_localpart("A")
    assert is_valid_localpart("", historical=True)
    assert is_valid_localpart("A\x01 ~", historical=True)
    assert not is_valid_localpart("a:b", historical=True)
    assert not is_valid_localpart("a\x00", historical=True)


@pytest.mark.parametrize(
    "room_id",
    [
        "!opaque:example.org",
        "!AbC123:example.org:8448",
        "!x:[::1]",
        "!" + HASH43,
        "!ünicode:example.org",
        "!:example.org",
    ],
)
def test_valid_room_ids(room_id: str) -> None:
    assert is_valid_room_id(room_id)


@pytest.mark.parametrize(
    "room_id",
    [
        "opaque:example.org",
        "!opaque",
        "!opaque:",
        "!opaque:bad_server",
        "!" + HASH43[:-1],
        "!" + HASH43 + "A",
        "!" + HASH43.replace("-", "+"),  # v12 room IDs are URL-safe base64
        "!a\x00:example.org",
        "$" + HASH43,
    ],
)
def test_invalid_room_ids(room_id: str) -> None:
    assert not is_valid_room_id(room_id)


def test_room_id_limit_is_255_bytes() -> None:
    server = ":example.org"
    exactly = "!" + "a" * (254 - len(server)) + server
    assert is_valid_room_id(exactly)
    assert not is_valid_room_id("!a" + exactly[1:])


@pytest.mark.parametrize(
    "event_id",
    [
        "$0:domain",
        "$abc:example.org:8448",
        "$" + HASH43,  # v4+
        "$" + HASH43.replace("-", "+").replace("_", "/"),  # v3
        "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk",
    ],
)
def test_valid_event_ids(event_id: str) -> None:
    assert is_valid_event_id(event_id)


@pytest.mark.parametrize(
    "event_id",
    [
        "$",
        "$short",
        "!" + HASH43,
        "$" + HASH43 + "=",
        "$" + HASH43[:-2] + "+_",  # both alphabets at once
        "$a:bad_server",
        "$a\x00:example.org",
        "0:domain",
    ],
)
def test_invalid_event_ids(event_id: str) -> None:
    assert not is_valid_event_id(event_id)


def test_event_id_limit_is_255_bytes() -> None:
    server = ":example.org"
    exactly = "$" + "a" * (254 - len(server)) + server
    assert is_valid_event_id(exactly)
    assert not is_valid_event_id("$a" + exactly[1:])


@pytest.mark.parametrize("alias", ["#room:example.org", "#Ünicode room:example.org:80"])
def test_valid_room_aliases(alias: str) -> None:
    assert is_valid_room_alias(alias)


@pytest.mark.parametrize(
    "alias", ["room:example.org", "#room", "#:example.org", "#a:b_c", "#a\x00:x.org"]
)
def test_invalid_room_aliases(alias: str) -> None:
    assert not is_valid_room_alias(alias)


def test_room_alias_limit_is_255_bytes() -> None:
    server = ":example.org"
    exactly = "#" + "a" * (254 - len(server)) + server
    assert is_valid_room_alias(exactly)
    assert not is_valid_room_alias("#a" + exactly[1:])


def test_server_name_of_takes_everything_after_the_first_colon() -> None:
    assert server_name_of("@alice:example.org:8448") == "example.org:8448"
    assert server_name_of("!room:[::1]:80") == "[::1]:80"
    assert server_name_of("$0:domain") == "domain"
    with pytest.raises(ValueError, match="no server name"):
        server_name_of("$" + HASH43)


def test_localpart_of() -> None:
    assert localpart_of("@alice:example.org:8448") == "alice"
    assert localpart_of("@:example.org") == ""
    with pytest.raises(ValueError, match="not a user ID"):
        localpart_of("!room:example.org")
    with pytest.raises(ValueError):
        localpart_of("@nocolon")
