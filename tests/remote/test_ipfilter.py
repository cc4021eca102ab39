"""The outbound IP range policy: which addresses are refused by default, what the allowlist
lifts, and that aiohttp connections really go through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from homeserver.remote.ipfilter import (
    BlockedAddressError,
    FilteringResolver,
    IpRangePolicy,
    filtered_connector,
    parse_ip,
)
from tests.remote.support import StaticResolver

DENIED_BY_DEFAULT = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata service
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "::1",
    "::",
    "fc00::1",  # ULA
    "fd12:3456::1",
    "fe80::1",  # link-local
    "fe80::1%eth0",
    "ff02::1",  # multicast
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
    "[::1]",
]

ALLOWED_BY_DEFAULT = [
    "1.1.1.1",
    "8.8.8.8",
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public address
    "2002:808:808::1",  # 6to4 wrapping 8.8.8.8
]


@pytest.mark.parametrize("address", DENIED_BY_DEFAULT)
def test_special_purpose_addresses_are_denied_by_default(address: str) -> None:
    assert not IpRangePolicy().is_allowed(address)


@pytest.mark.parametrize("address", ALLOWED_BY_DEFAULT)
def test_public_addresses_are_allowed_by_default(address: str) -> None:
    assert IpRangePolicy().is_allowed(address)


def test_allowlist_lifts_only_the_listed_range() -> None:
    policy = IpRangePolicy(["127.0.0.0/8"])
    assert policy.is_allowed("127.0.0.1")
    assert policy.is_allowed("::ffff:127.0.0.1")  # the mapped form is the same address
    assert not policy.is_allowed("::1")
    assert not policy.is_allowed("10.0.0.1")
    assert not policy.is_allowed("::ffff:10.0.0.1")


def test_allowlist_of_an_ipv6_range() -> None:
    policy = IpRangePolicy(["fd00::/8"])
    assert policy.is_allowed("fd00::5")
    assert not policy.is_allowed("fc00::5")


def test_check_names_the_address_and_the_setting() -> None:
    with pytest.raises(BlockedAddressError, match=r"internal\.example \(10\.0\.0\.7\).*ip_range"):
        IpRangePolicy().check("10.0.0.7", "internal.example")


def test_a_name_is_not_an_ip_address() -> None:
    assert parse_ip("example.org") is None
    assert parse_ip("[::1]") is not None
    with pytest.raises(ValueError, match="not an IP address"):
        IpRangePolicy().is_allowed("example.org")


async def test_filtering_resolver_keeps_only_allowed_addresses() -> None:
    inner = StaticResolver({"mixed.test": ["10.0.0.1", "8.8.8.8"], "inside.test": ["10.0.0.1"]})
    resolver = FilteringResolver(IpRangePolicy(), inner)
    assert [r["host"] for r in await resolver.resolve("mixed.test", 443)] == ["8.8.8.8"]
    with pytest.raises(BlockedAddressError, match=r"inside\.test"):
        await resolver.resolve("inside.test", 443)


@dataclass
class Loopback:
    port: int  # on 127.0.0.1; /bounce redirects to /hello on 127.0.0.2:other_port
    other_port: int


@pytest.fixture
async def loopback_server() -> AsyncIterator[Loopback]:
    app = web.Application()
    ports: list[int] = []

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{ports[1]}/hello")

    app.router.add_get("/hello", hello)
    app.router.add_get("/bounce", bounce)
    runner = web.AppRunner(app)
    await runner.setup()
    for host in ("127.0.0.1", "127.0.0.2"):
        site = web.TCPSite(runner, host, 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    yield Loopback(ports[0], ports[1])
    await runner.cleanup()


async def test_connector_refuses_a_loopback_ip_literal_without_the_allowlist(
    loopback_server: Loopback,
) -> None:
    async with aiohttp.ClientSession(connector=filtered_connector(IpRangePolicy())) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://127.0.0.1:{loopback_server.port}/hello")
    assert isinstance(caught.value.os_error, BlockedAddressError)


async def test_connector_refuses_a_name_resolving_to_loopback(loopback_server: Loopback) -> None:
    inner = StaticResolver({"sneaky.test": ["127.0.0.1"]})
    connector = filtered_connector(IpRangePolicy(), inner)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match=r"sneaky\.test") as caught:
            await session.get(f"http://sneaky.test:{loopback_server.port}/hello")
    assert isinstance(caught.value.os_error, BlockedAddressError)


async def test_connector_refuses_a_redirect_to_a_blocked_address(
    loopback_server: Loopback,
) -> None:
    # Only 127.0.0.1 is allowed: the first hop works, the redirect to 127.0.0.2 is refused.
    connector = filtered_connector(IpRangePolicy(["127.0.0.1/32"]))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://127.0.0.1:{loopback_server.port}/hello") as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://127.0.0.1:{loopback_server.port}/bounce")
    assert isinstance(caught.value.os_error, BlockedAddressError)
    assert "127.0.0.2" in str(caught.value)


async def test_connector_with_allowlist_reaches_loopback(loopback_server: Loopback) -> None:
    connector = filtered_connector(IpRangePolicy(["127.0.0.0/8"]))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://127.0.0.1:{loopback_server.port}/bounce") as response,
    ):
        assert response.status == 200
        assert await response.text() == "hello"
