"""Server ACLs (`m.room.server_acl`): content parsing and the spec's matching order."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.acl import ServerAcl, is_ip_literal, is_server_allowed, strip_port


def acl(allow: Any = ("*",), deny: Any = (), allow_ip_literals: Any = True) -> ServerAcl:
    return ServerAcl.from_content(
        {"allow": list(allow), "deny": list(deny), "allow_ip_literals": allow_ip_literals}
    )


def test_no_acl_event_allows_everyone() -> None:
    assert is_server_allowed(None, "anything.example")
    assert is_server_allowed(None, "1.2.3.4")


@pytest.mark.parametrize(
    ("allow", "deny", "server", "allowed"),
    [
        # `*` matches any run, including an empty one.
        (["*"], [], "matrix.org", True),
        (["*.matrix.org"], [], "chat.matrix.org", True),
        (["*.matrix.org"], [], "matrix.org", False),
        (["*matrix.org"], [], "matrix.org", True),
        (["*.matrix.org"], [], "a.b.matrix.org", True),
        (["*.matrix.org"], [], "matrix.org.evil.com", False),
        (["matrix.*"], [], "matrix.org", True),
        (["m*x*.org"], [], "matrix.org", True),
        (["m*x*.org"], [], "mx.org", True),
        (["m*x*z.org"], [], "matrix.org", False),
        # `?` matches exactly one character.
        (["ma?rix.org"], [], "matrix.org", True),
        (["ma?rix.org"], [], "marix.org", False),
        (["ma?rix.org"], [], "maatrix.org", False),
        (["?"], [], "a", True),
        (["?"], [], "ab", False),
        (["*?.org"], [], ".org", False),
        (["*?.org"], [], "a.org", True),
        (["a?*c"], [], "abc", True),
        (["a?*c"], [], "ac", False),
        # Segments never overlap each other or the anchored ends.
        (["*ab*abc"], [], "ababc", True),
        (["*aa*aa"], [], "aaa", False),
        (["*aa*aa"], [], "aaaa", True),
        (["a*a"], [], "a", False),
        (["*a?c*"], [], "xxabcxx", True),
        (["*a?c*"], [], "xxacxx", False),
        # Literal characters, including regex metacharacters, match only themselves.
        (["matrix.org"], [], "matrixXorg", False),
        (["matrix.org"], [], "matrix.org", True),
        (["matrix.org"], [], "matrix.org.au", False),
        (["[::1]"], [], "[::1]", True),
        # Case-insensitive both ways.
        (["*.Matrix.ORG"], [], "CHAT.matrix.org", True),
        # Deny wins over allow.
        (["*"], ["evil.com"], "evil.com", False),
        (["*"], ["evil.com"], "good.com", True),
        (["evil.com"], ["*"], "evil.com", False),
        (["*"], ["*.evil.com"], "sub.evil.com", False),
        (["*"], ["*.evil.com"], "evil.com", True),
        # Empty allow list denies everything, the ACL's own server included.
        ([], [], "matrix.org", False),
        # No match in allow: deny.
        (["good.com"], [], "other.com", False),
    ],
)
def test_glob_matching(allow: list[str], deny: list[str], server: str, allowed: bool) -> None:
    assert is_server_allowed(acl(allow, deny), server) is allowed


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("evil.com", False),
        ("evil.com:8448", False),
        ("evil.com:1234", False),
        ("EVIL.com:443", False),
        ("good.com:8448", True),
    ],
)
def test_port_is_never_considered(server: str, allowed: bool) -> None:
    assert is_server_allowed(acl(["*"], ["evil.com"]), server) is allowed


def test_pattern_with_a_port_matches_nothing_with_that_port() -> None:
    # Ports are stripped from the server name, so a rule naming a port cannot match.
    assert not is_server_allowed(acl(["evil.com:8448"]), "evil.com:8448")


@pytest.mark.parametrize(
    "server",
    [
        "1.2.3.4",
        "1.2.3.4:8448",
        "[::1]",
        "[::1]:8448",
        "[2001:db8::ff00:42:8329]",
        "[::ffff:1.2.3.4]",
    ],
)
def test_ip_literals_denied_when_not_allowed(server: str) -> None:
    assert not is_server_allowed(acl(["*"], allow_ip_literals=False), server)
    assert is_server_allowed(acl(["*"], allow_ip_literals=True), server)


@pytest.mark.parametrize("server", ["1.2.3.4.example.com", "example.com", "1234", "fe80.example"])
def test_hostnames_are_not_ip_literals(server: str) -> None:
    assert is_server_allowed(acl(["*"], allow_ip_literals=False), server)


def test_ip_literal_rule_comes_before_allow() -> None:
    assert not is_server_allowed(acl(["1.2.3.4"], allow_ip_literals=False), "1.2.3.4")
    assert is_server_allowed(acl(["1.2.3.*"], allow_ip_literals=True), "1.2.3.4:80")
    assert not is_server_allowed(acl(["*"], ["1.2.3.*"]), "1.2.3.4")


def test_ipv6_literal_can_be_matched_with_brackets() -> None:
    assert not is_server_allowed(acl(["*"], ["[2001:db8::*]"]), "[2001:db8::1]:8448")
    assert is_server_allowed(acl(["*"], ["[2001:db8::*]"]), "[2001:db9::1]:8448")


def test_from_content_defaults() -> None:
    empty = ServerAcl.from_content({})
    assert empty == ServerAcl(allow=(), deny=(), allow_ip_literals=True)
    assert not is_server_allowed(empty, "matrix.org")


@pytest.mark.parametrize("value", [None, "false", 0, 1, [], {}])
def test_allow_ip_literals_defaults_to_true_unless_a_boolean(value: Any) -> None:
    content: dict[str, Any] = {"allow": ["*"], "allow_ip_literals": value}
    assert ServerAcl.from_content(content).allow_ip_literals is True
    assert ServerAcl.from_content({"allow_ip_literals": False}).allow_ip_literals is False


def test_invalid_entries_are_ignored_not_fatal() -> None:
    parsed = ServerAcl.from_content(
        {"allow": ["*", 3, None, {"x": 1}, ["y"]], "deny": "evil.com", "allow_ip_literals": True}
    )
    assert parsed == ServerAcl(allow=("*",), deny=(), allow_ip_literals=True)
    assert ServerAcl.from_content({"allow": "*"}).allow == ()
    assert ServerAcl.from_content("not an object").allow == ()  # type: ignore[arg-type]


def test_hostile_glob_does_not_take_exponential_time() -> None:
    # A regex translation backtracks for a very long time on this; leftmost segment
    # placement answers at once.
    hostile = acl(["*a*a*a*a*a*a*a*a*a*a*b*", "*a?a*a?a*a?a*a?a*a?a*b?"])
    started = time.monotonic()
    assert not is_server_allowed(hostile, "a" * 250)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("server", "host"),
    [
        ("matrix.org", "matrix.org"),
        ("matrix.org:8448", "matrix.org"),
        ("1.2.3.4:5", "1.2.3.4"),
        ("[::1]", "[::1]"),
        ("[::1]:8448", "[::1]"),
    ],
)
def test_strip_port(server: str, host: str) -> None:
    assert strip_port(server) == host


@pytest.mark.parametrize(
    ("host", "literal"),
    [
        ("1.2.3.4", True),
        ("[::1]", True),
        ("[fe80::1]", True),
        ("matrix.org", False),
        ("[x]", False),
    ],
)
def test_is_ip_literal(host: str, literal: bool) -> None:
    assert is_ip_literal(host) is literal


@given(
    pattern=st.text(alphabet="ab*?.", max_size=8),
    name=st.text(alphabet="abAB.", max_size=10),
)
def test_glob_agrees_with_a_reference_regex_on_small_inputs(pattern: str, name: str) -> None:
    # Short inputs keep the backtracking reference fast.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    expected = re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None
    assert is_server_allowed(acl([pattern]), name) is expected
