"""Which IP addresses outbound requests may connect to.

CONTRACT "Config file": outbound requests (federation, key fetches, notary queries, media, …)
refuse loopback, private, link-local, CGNAT, ULA and multicast addresses by default — for
resolved names and IP-literal server names alike — unless `federation.ip_range_allowlist`
lists them. Without this, any remote server could make us probe our own network (SSRF) through
a server name, a `.well-known` delegation, an SRV record or a redirect.

The policy is applied twice, so that no path around it exists:
- `FilteringResolver` drops blocked addresses from every DNS answer aiohttp asks for, so a
  name that only resolves to blocked addresses fails with a clear error;
- `IpRangePolicy.socket_factory` checks the address of every socket aiohttp connects, which
  also covers IP-literal URLs (aiohttp does not resolve those) and every redirect hop.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any, Final, TypeAlias

from aiohappyeyeballs import AddrInfoType
from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# IANA special-purpose address registries (RFC 6890 and successors): everything that is not a
# public unicast destination on the internet.
DEFAULT_DENIED_RANGES: Final[tuple[str, ...]] = (
    # IPv4
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",  # private (RFC 1918)
    "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, including cloud metadata services
    "172.16.0.0/12",  # private (RFC 1918)
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private (RFC 1918)
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast address
    # IPv6
    "::/128",  # unspecified
    "::1/128",  # loopback
    "::/96",  # IPv4-compatible addresses (deprecated)
    "100::/64",  # discard-only
    "2001:db8::/32",  # documentation
    "fc00::/7",  # unique local addresses (ULA)
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)

# IPv6 prefixes that carry an IPv4 address in their low bits; the embedded address is checked
# too, so `64:ff9b::7f00:1` cannot reach 127.0.0.1 through a NAT64 gateway.
_NAT64_PREFIXES: Final = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


class BlockedAddressError(OSError):
    """A connection to an address the IP range policy refuses."""

    def __init__(self, address: str, host: str | None = None) -> None:
        target = f"{host} ({address})" if host and host != address else address
        super().__init__(
            f"refusing to connect to {target}: the address is in a denied range "
            "(see federation.ip_range_allowlist)"
        )
        self.address = address
        self.host = host


def parse_ip(text: str) -> IPAddress | None:
    """An IP address from `text` (brackets and an IPv6 zone allowed), or None for a name."""
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    candidate = candidate.partition("%")[0]  # zone index: fe80::1%eth0
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


class IpRangePolicy:
    """Denied ranges minus the operator's allowlist.

    An address is allowed if the allowlist contains it, or if no denied range does. IPv4-mapped
    IPv6 addresses (`::ffff:a.b.c.d`) are judged as the IPv4 address they are; 6to4 and NAT64
    addresses must pass both as themselves and as the IPv4 address they embed.
    """

    def __init__(
        self,
        allowlist: Iterable[str] = (),
        denylist: Iterable[str] = DEFAULT_DENIED_RANGES,
    ) -> None:
        self._allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in allowlist
        )
        self._denied: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in denylist
        )

    def is_allowed(self, address: str | IPAddress) -> bool:
        ip = parse_ip(address) if isinstance(address, str) else address
        if ip is None:
            raise ValueError(f"{address!r} is not an IP address")
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id is not None:
                ip = ipaddress.IPv6Address(str(ip).partition("%")[0])
            if ip.ipv4_mapped is not None:
                return self._allowed_as_is(ip.ipv4_mapped)
            embedded = _embedded_ipv4(ip)
            if embedded is not None and not self._allowed_as_is(embedded):
                return False
        return self._allowed_as_is(ip)

    def _allowed_as_is(self, ip: IPAddress) -> bool:
        if any(ip in network for network in self._allowed if network.version == ip.version):
            return True
        return not any(ip in network for network in self._denied if network.version == ip.version)

    def check(self, address: str, host: str | None = None) -> None:
        """Raise `BlockedAddressError` unless `address` may be connected to."""
        if not self.is_allowed(address):
            raise BlockedAddressError(address, host)

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """For `aiohttp.TCPConnector(socket_factory=…)`: every connection attempt passes here
        with the address it is about to connect to."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in prefix for prefix in _NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class FilteringResolver(AbstractResolver):
    """Wraps an aiohttp resolver and keeps only the addresses the policy allows."""

    def __init__(self, policy: IpRangePolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results if self._policy.is_allowed(result["host"])]
        if results and not allowed:
            raise BlockedAddressError(results[0]["host"], host)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def filtered_connector(
    policy: IpRangePolicy, inner_resolver: AbstractResolver | None = None, **options: Any
) -> TCPConnector:
    """An aiohttp connector that resolves through `FilteringResolver` and checks the address of
    every socket it opens, IP-literal URLs and redirect targets included."""
    return TCPConnector(
        resolver=FilteringResolver(policy, inner_resolver),
        socket_factory=policy.socket_factory,
        **options,
    )
