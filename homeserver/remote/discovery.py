"""Server discovery: from a server name to where we connect, which `Host` header we send and
which name the TLS certificate must be valid for.

S2S "Resolving server names", steps 1–6 (and 3.1–3.5 for a delegated name), each a method
below. Resolving host names to addresses (CNAME, AAAA, A) is left to the HTTP connector, whose
resolver applies the IP range policy (homeserver/remote/ipfilter.py); here we only decide the
names and ports.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from federation.ids import parse_server_name
from homeserver.remote.ipfilter import parse_ip

if TYPE_CHECKING:
    import dns.asyncresolver

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT: Final = 8448
SRV_SERVICES: Final = ("_matrix-fed._tcp", "_matrix._tcp")  # the second is deprecated
SRV_LOOKUP_TIMEOUT_S: Final = 10.0


class DiscoveryError(Exception):
    """The server name cannot be resolved to anywhere to connect to."""


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where and how to reach a server's federation API."""

    server_name: str
    # `(host, port)` pairs to try in order; a host is a DNS name or a bare IP address.
    targets: tuple[tuple[str, int], ...]
    host_header: str
    # The name the certificate must be valid for: a DNS name, or an IP address.
    tls_name: str

    @property
    def sni(self) -> str | None:
        """S2S "TLS": send SNI for the expected certificate, except for an IP address."""
        return None if parse_ip(self.tls_name) is not None else self.tls_name


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # without the final dot; "." means "decidedly not available" (RFC 2782)


SrvLookup = Callable[[str], Awaitable[Sequence[SrvRecord]]]


class WellKnownSource(Protocol):
    async def delegated_server_name(self, hostname: str) -> str | None: ...


class DnsSrvLookup:
    """SRV lookups with dnspython's asyncio resolver; no record (or a DNS failure) is an empty
    answer, so discovery falls through to the next step.

    dnspython (~3 MB of modules) is imported at the first lookup, not at start-up: a server
    that never federates never needs it (docs/memory.md)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self._resolver = resolver

    def _default_resolver(self) -> dns.asyncresolver.Resolver:
        import dns.asyncresolver
        import dns.resolver

        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            logger.warning("no DNS resolver configuration: SRV records cannot be used")
            resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.cache = dns.resolver.LRUCache()
        resolver.lifetime = SRV_LOOKUP_TIMEOUT_S
        return resolver

    async def __call__(self, name: str) -> list[SrvRecord]:
        import dns.exception
        import dns.resolver

        if self._resolver is None:
            self._resolver = self._default_resolver()
        try:
            answer = await self._resolver.resolve(name, "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            logger.info("SRV lookup for %s failed: %s", name, exc)
            return []
        return [
            SrvRecord(
                priority=record.priority,
                weight=record.weight,
                port=record.port,
                target=record.target.to_text(omit_final_dot=True),
            )
            for record in answer
        ]


def order_srv_records(records: Sequence[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 order: lowest priority first; within a priority, a weighted random order."""
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in records}):
        pending = [record for record in records if record.priority == priority]
        while pending:
            total = sum(record.weight for record in pending)
            if total == 0:
                chosen = pending[0]
            else:
                # The running sum of weights first reaching a random value in [1, total].
                point = rng.randint(1, total)
                running = 0
                chosen = pending[-1]
                for record in pending:
                    running += record.weight
                    if running >= point:
                        chosen = record
                        break
            ordered.append(chosen)
            pending.remove(chosen)
    return ordered


class ServerResolver:
    """S2S "Resolving server names", in the spec's order."""

    def __init__(
        self,
        well_known: WellKnownSource,
        srv_lookup: SrvLookup,
        rng: random.Random | None = None,
    ) -> None:
        self._well_known = well_known
        self._srv_lookup = srv_lookup
        self._rng = rng if rng is not None else random.Random()

    async def resolve(self, server_name: str) -> ServerAddress:
        try:
            hostname, port = parse_server_name(server_name)
        except ValueError as exc:
            raise DiscoveryError(str(exc)) from None
        ip = parse_ip(hostname)
        if ip is not None:
            return self._step1_ip_literal(server_name, str(ip), port)
        if port is not None:
            return self._step2_explicit_port(server_name, hostname, port)
        delegated = await self._well_known.delegated_server_name(hostname)
        if delegated is not None:
            return await self._step3_delegated(server_name, delegated)
        return await self._steps4_to_6_srv_or_default(server_name, hostname)

    def _step1_ip_literal(self, server_name: str, ip: str, port: int | None) -> ServerAddress:
        # Step 1: the IP and port (8448 by default); Host is the server name, with its port if
        # it had one; the certificate must be valid for the IP address.
        return ServerAddress(
            server_name=server_name,
            targets=((ip, port or DEFAULT_FEDERATION_PORT),),
            host_header=server_name,
            tls_name=ip,
        )

    def _step2_explicit_port(self, server_name: str, hostname: str, port: int) -> ServerAddress:
        # Step 2: resolve the hostname (CNAME, AAAA, A), connect to the given port; Host is the
        # server name with its port; the certificate is for the hostname.
        return ServerAddress(server_name, ((hostname, port),), server_name, hostname)

    async def _step3_delegated(self, server_name: str, delegated: str) -> ServerAddress:
        try:
            hostname, port = parse_server_name(delegated)
        except ValueError as exc:  # the well-known reader already checked; be safe anyway
            raise DiscoveryError(f"delegated server name: {exc}") from None
        ip = parse_ip(hostname)
        if ip is not None:
            # 3.1: the IP and port (8448 by default); Host is the IP address, with the port if
            # one was provided; the certificate is for the IP address.
            return ServerAddress(
                server_name, ((str(ip), port or DEFAULT_FEDERATION_PORT),), delegated, str(ip)
            )
        if port is not None:
            # 3.2: resolve the delegated hostname, use the delegated port; Host is
            # `<delegated_hostname>:<delegated_port>`; the certificate is for the hostname.
            return ServerAddress(server_name, ((hostname, port),), delegated, hostname)
        # 3.3 `_matrix-fed._tcp`, 3.4 `_matrix._tcp` (deprecated), 3.5 port 8448; Host and the
        # certificate are the delegated hostname in each case.
        targets = await self._srv_targets(hostname)
        return ServerAddress(server_name, targets, hostname, hostname)

    async def _steps4_to_6_srv_or_default(self, server_name: str, hostname: str) -> ServerAddress:
        # 4 `_matrix-fed._tcp.<hostname>`, 5 `_matrix._tcp.<hostname>` (deprecated), 6 the
        # hostname on port 8448; Host and the certificate are always `<hostname>`, never the
        # SRV target (DNS is not secure: the target must prove itself with a certificate).
        targets = await self._srv_targets(hostname)
        return ServerAddress(server_name, targets, hostname, hostname)

    async def _srv_targets(self, hostname: str) -> tuple[tuple[str, int], ...]:
        for service in SRV_SERVICES:
            records = await self._srv_lookup(f"{service}.{hostname}")
            if records:
                if len(records) == 1 and records[0].target in (".", ""):
                    raise DiscoveryError(f"{service}.{hostname}: service decidedly not available")
                usable = [record for record in records if record.target not in (".", "")]
                ordered = order_srv_records(usable, self._rng)
                return tuple((record.target, record.port) for record in ordered)
        return ((hostname, DEFAULT_FEDERATION_PORT),)
