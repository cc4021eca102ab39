"""Test doubles for the outside world of homeserver/remote: DNS answers, a real DNS server on
loopback, TLS certificates, and aiohttp servers on loopback ports."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from homeserver.tls import build_self_signed_certificate


class StaticResolver(AbstractResolver):
    """A stand-in for A/AAAA lookups: fixed answers per name."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        pass


@dataclass
class FakeDnsServer(asyncio.DatagramProtocol):
    """A real DNS server on a loopback UDP port answering SRV queries from `srv_records`
    (name → `(priority, weight, port, target)` records); every other name is NXDOMAIN."""

    srv_records: dict[str, list[tuple[int, int, int, str]]]
    queries: list[str] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        self.queries.append(name)
        records = self.srv_records.get(name)
        if question.rdtype == dns.rdatatype.SRV and records:
            rrset = response.find_rrset(
                response.answer,
                question.name,
                dns.rdataclass.IN,
                dns.rdatatype.SRV,
                create=True,
            )
            for priority, weight, port, target in records:
                text = f"{priority} {weight} {port} {target}."
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SRV, text), ttl=60)
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

    def resolver(self) -> dns.asyncresolver.Resolver:
        """A dnspython resolver that asks only this server (no cache: every lookup is seen)."""
        assert self.transport is not None
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.transport.get_extra_info("sockname")[1]
        resolver.lifetime = 2.0
        return resolver


@asynccontextmanager
async def fake_dns_server(
    srv_records: dict[str, list[tuple[int, int, int, str]]],
) -> AsyncIterator[FakeDnsServer]:
    server = FakeDnsServer(srv_records)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    try:
        yield server
    finally:
        transport.close()


@dataclass(frozen=True)
class LoopbackCertificate:
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies peers (host names included) against this certificate as the only CA."""
        return ssl.create_default_context(cafile=str(self.cert_path))


def make_certificate(
    directory: Path, hostnames: Sequence[str], ips: Sequence[str] = ()
) -> LoopbackCertificate:
    cert_pem, key_pem = build_self_signed_certificate(hostnames, ips)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    return LoopbackCertificate(cert_path, key_path)


@asynccontextmanager
async def serve(
    app: web.Application,
    *,
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[int]:
    """Run `app` on `port` (by default a free one) of `host`; yields the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    server = site._server
    assert server is not None
    try:
        yield server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    finally:
        await runner.cleanup()
