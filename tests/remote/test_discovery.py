"""Server discovery against real servers on loopback: a TLS `.well-known` server and a DNS
server answering SRV queries (S2S "Resolving server names")."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from homeserver.remote.discovery import (
    DiscoveryError,
    DnsSrvLookup,
    ServerAddress,
    ServerResolver,
    SrvRecord,
    order_srv_records,
)
from homeserver.remote.ipfilter import IpRangePolicy, filtered_connector
from homeserver.remote.well_known import (
    DEFAULT_CACHE_S,
    MAX_CACHE_S,
    MIN_CACHE_S,
    WELL_KNOWN_PATH,
    WellKnownResolver,
    cache_period_s,
)
from tests.remote.support import (
    FakeDnsServer,
    LoopbackCertificate,
    StaticResolver,
    fake_dns_server,
    make_certificate,
    serve,
)

# Names the test certificate is valid for; every *.test name resolves to 127.0.0.1.
CERT_NAMES = ["wk.test", "other.test", "redirect.test", "srv.test", "plain.test"]
ALL_NAMES = [*CERT_NAMES, "nocert.test"]

Handler = Callable[[web.Request], web.Response]


@dataclass
class WellKnownServer:
    port: int
    cert: LoopbackCertificate
    handlers: dict[str, Handler]  # by Host name; missing → 404
    requests: Counter[str] = field(default_factory=Counter)


def json_handler(body: object, headers: dict[str, str] | None = None) -> Handler:
    return lambda _request: web.json_response(body, headers=headers)


@pytest.fixture
async def well_known_server(tmp_path: Path) -> AsyncIterator[WellKnownServer]:
    cert = make_certificate(tmp_path / "cert", CERT_NAMES, ["127.0.0.1"])
    state = WellKnownServer(port=0, cert=cert, handlers={})

    async def dispatch(request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0]
        state.requests[f"{host}{request.path}"] += 1
        handler = state.handlers.get(f"{host}{request.path}")
        if handler is None:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return handler(request)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", dispatch)
    async with serve(app, tls=cert.server_context()) as port:
        state.port = port
        yield state


@pytest.fixture
async def dns() -> AsyncIterator[FakeDnsServer]:
    async with fake_dns_server({}) as server:
        yield server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Discovery:
    resolver: ServerResolver
    clock: FakeClock


@pytest.fixture
async def discovery(
    well_known_server: WellKnownServer, dns: FakeDnsServer
) -> AsyncIterator[Discovery]:
    connector = filtered_connector(
        IpRangePolicy(["127.0.0.0/8"]), StaticResolver({name: ["127.0.0.1"] for name in ALL_NAMES})
    )
    clock = FakeClock()
    async with aiohttp.ClientSession(connector=connector) as session:
        well_known = WellKnownResolver(
            session,
            tls=well_known_server.cert.client_context(),
            port=well_known_server.port,
            clock=clock,
        )
        yield Discovery(ServerResolver(well_known, DnsSrvLookup(dns.resolver())), clock)


def well_known(server: WellKnownServer, host: str, handler: Handler) -> None:
    server.handlers[f"{host}{WELL_KNOWN_PATH}"] = handler


def fetches(server: WellKnownServer, host: str) -> int:
    return server.requests[f"{host}{WELL_KNOWN_PATH}"]


# Step 1 and step 2: no lookups at all.


async def test_ip_literal_is_used_with_the_default_port_and_no_lookups(
    discovery: Discovery, well_known_server: WellKnownServer, dns: FakeDnsServer
) -> None:
    address = await discovery.resolver.resolve("127.0.0.9")
    assert address == ServerAddress("127.0.0.9", (("127.0.0.9", 8448),), "127.0.0.9", "127.0.0.9")
    assert address.sni is None  # S2S "TLS": no SNI for an IP address
    v6 = await discovery.resolver.resolve("[2001:db8::1]:8449")
    assert v6.targets == (("2001:db8::1", 8449),)
    assert v6.host_header == "[2001:db8::1]:8449"
    assert v6.tls_name == "2001:db8::1"
    assert not well_known_server.requests and not dns.queries


async def test_explicit_port_skips_well_known_and_srv(
    discovery: Discovery, well_known_server: WellKnownServer, dns: FakeDnsServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "other.test:1"}))
    address = await discovery.resolver.resolve("wk.test:1234")
    assert address.targets == (("wk.test", 1234),)
    assert address.host_header == "wk.test:1234"
    assert address.sni == "wk.test"
    assert not well_known_server.requests and not dns.queries


# Step 3: delegation through .well-known.


async def test_delegation_with_a_port_connects_there_without_srv(
    discovery: Discovery, well_known_server: WellKnownServer, dns: FakeDnsServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "delegated.test:4567"}))
    address = await discovery.resolver.resolve("wk.test")
    assert address.targets == (("delegated.test", 4567),)
    assert address.host_header == "delegated.test:4567"
    assert address.tls_name == "delegated.test"
    assert not dns.queries


async def test_delegation_to_an_ip_literal(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "[2001:db8::5]"}))
    address = await discovery.resolver.resolve("wk.test")
    assert address.targets == (("2001:db8::5", 8448),)
    assert address.host_header == "[2001:db8::5]"
    assert address.sni is None


async def test_delegated_name_without_port_uses_its_matrix_fed_srv_record(
    discovery: Discovery, well_known_server: WellKnownServer, dns: FakeDnsServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "delegated.test"}))
    dns.srv_records["_matrix-fed._tcp.delegated.test"] = [(10, 0, 7777, "target.test")]
    dns.srv_records["_matrix._tcp.delegated.test"] = [(10, 0, 1111, "old.test")]
    dns.srv_records["_matrix-fed._tcp.wk.test"] = [(10, 0, 2222, "wrong.test")]
    address = await discovery.resolver.resolve("wk.test")
    assert address.targets == (("target.test", 7777),)
    # Host and certificate are the delegated name, never the SRV target.
    assert address.host_header == "delegated.test"
    assert address.tls_name == "delegated.test"
    assert dns.queries == ["_matrix-fed._tcp.delegated.test"]


async def test_delegated_name_falls_back_to_deprecated_srv_then_port_8448(
    discovery: Discovery, well_known_server: WellKnownServer, dns: FakeDnsServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "delegated.test"}))
    dns.srv_records["_matrix._tcp.delegated.test"] = [(10, 0, 1111, "old.test")]
    address = await discovery.resolver.resolve("wk.test")
    assert address.targets == (("old.test", 1111),)
    assert address.host_header == "delegated.test"

    well_known(well_known_server, "other.test", json_handler({"m.server": "bare.test"}))
    address = await discovery.resolver.resolve("other.test")
    assert address.targets == (("bare.test", 8448),)
    assert address.host_header == "bare.test"
    assert dns.queries[-2:] == ["_matrix-fed._tcp.bare.test", "_matrix._tcp.bare.test"]


# Steps 4 to 6: no usable .well-known.


async def test_without_well_known_the_srv_record_of_the_hostname_is_used(
    discovery: Discovery, dns: FakeDnsServer
) -> None:
    dns.srv_records["_matrix-fed._tcp.srv.test"] = [(10, 0, 9000, "target.test")]
    address = await discovery.resolver.resolve("srv.test")
    assert address.targets == (("target.test", 9000),)
    assert address.host_header == "srv.test"
    assert address.tls_name == "srv.test"


async def test_without_well_known_or_srv_port_8448_of_the_hostname(
    discovery: Discovery, dns: FakeDnsServer
) -> None:
    address = await discovery.resolver.resolve("plain.test")
    assert address == ServerAddress(
        "plain.test", (("plain.test", 8448),), "plain.test", "plain.test"
    )
    assert dns.queries == ["_matrix-fed._tcp.plain.test", "_matrix._tcp.plain.test"]


def raw(body: bytes, status: int = 200) -> Handler:
    return lambda _request: web.Response(body=body, status=status)


@pytest.mark.parametrize(
    "handler",
    [
        raw(b'{"m.server": "other.test:1"}', status=500),
        raw(b"<html>not json</html>"),
        raw(b'["m.server"]'),
        raw(b'{"server": "other.test:1"}'),
        raw(b'{"m.server": 8448}'),
        raw(b'{"m.server": "not a server name!"}'),
        raw(b'{"m.server": "other.test:1", "padding": "' + b"x" * 100_000 + b'"}'),
    ],
    ids=["500", "not-json", "not-object", "no-m.server", "not-string", "invalid-name", "huge"],
)
async def test_invalid_well_known_answers_fall_through_to_srv(
    discovery: Discovery, well_known_server: WellKnownServer, handler: Handler
) -> None:
    well_known(well_known_server, "wk.test", handler)
    address = await discovery.resolver.resolve("wk.test")
    assert address.targets == (("wk.test", 8448),)
    assert fetches(well_known_server, "wk.test") == 1


async def test_well_known_is_read_whatever_its_content_type(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    well_known(well_known_server, "wk.test", raw(b'{"m.server": "other.test:8"}'))
    assert (await discovery.resolver.resolve("wk.test")).targets == (("other.test", 8),)


async def test_redirects_are_followed_to_another_host(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    port = well_known_server.port

    def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"https://other.test:{port}/elsewhere")

    well_known(well_known_server, "redirect.test", redirect)
    well_known_server.handlers["other.test/elsewhere"] = json_handler({"m.server": "x.test:9"})
    address = await discovery.resolver.resolve("redirect.test")
    assert address.targets == (("x.test", 9),)


async def test_redirect_loops_and_downgrades_fall_through(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    def loop(_request: web.Request) -> web.Response:
        raise web.HTTPFound(WELL_KNOWN_PATH)

    def downgrade(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://other.test:{well_known_server.port}{WELL_KNOWN_PATH}")

    well_known(well_known_server, "redirect.test", loop)
    well_known(well_known_server, "wk.test", downgrade)
    assert (await discovery.resolver.resolve("redirect.test")).targets == (("redirect.test", 8448),)
    assert fetches(well_known_server, "redirect.test") == 1  # the loop was noticed at once
    assert (await discovery.resolver.resolve("wk.test")).targets == (("wk.test", 8448),)
    assert fetches(well_known_server, "other.test") == 0


async def test_well_known_needs_a_certificate_for_the_hostname(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    well_known(well_known_server, "nocert.test", json_handler({"m.server": "evil.test:1"}))
    address = await discovery.resolver.resolve("nocert.test")
    assert address.targets == (("nocert.test", 8448),)
    assert fetches(well_known_server, "nocert.test") == 0  # refused during the TLS handshake


async def test_well_known_on_a_denied_address_is_never_requested(
    well_known_server: WellKnownServer, dns: FakeDnsServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "evil.test:1"}))
    connector = filtered_connector(IpRangePolicy(), StaticResolver({"wk.test": ["127.0.0.1"]}))
    async with aiohttp.ClientSession(connector=connector) as session:
        resolver = ServerResolver(
            WellKnownResolver(
                session, tls=well_known_server.cert.client_context(), port=well_known_server.port
            ),
            DnsSrvLookup(dns.resolver()),
        )
        address = await resolver.resolve("wk.test")
    assert address.targets == (("wk.test", 8448),)
    assert not well_known_server.requests


# Caching.


async def test_answers_are_cached_for_24_hours_by_default(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "other.test:1"}))
    await discovery.resolver.resolve("wk.test")
    discovery.clock.now += DEFAULT_CACHE_S - 1
    await discovery.resolver.resolve("wk.test")
    assert fetches(well_known_server, "wk.test") == 1
    well_known(well_known_server, "wk.test", json_handler({"m.server": "other.test:2"}))
    discovery.clock.now += 2
    assert (await discovery.resolver.resolve("wk.test")).targets == (("other.test", 2),)
    assert fetches(well_known_server, "wk.test") == 2


async def test_cache_control_max_age_is_respected(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    headers = {"Cache-Control": "public, max-age=3600"}
    well_known(well_known_server, "wk.test", json_handler({"m.server": "other.test:1"}, headers))
    await discovery.resolver.resolve("wk.test")
    discovery.clock.now += 3599
    await discovery.resolver.resolve("wk.test")
    assert fetches(well_known_server, "wk.test") == 1
    discovery.clock.now += 2
    await discovery.resolver.resolve("wk.test")
    assert fetches(well_known_server, "wk.test") == 2


async def test_errors_are_cached_with_exponential_back_off_up_to_an_hour(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    # No handler: 404 every time. Retries come after 5, then 10, 20, 40, 60, 60 minutes.
    expected_gaps_min = [5, 10, 20, 40, 60, 60]
    await discovery.resolver.resolve("wk.test")
    for fetch_number, gap in enumerate(expected_gaps_min, start=2):
        discovery.clock.now += gap * 60 - 1
        await discovery.resolver.resolve("wk.test")
        assert fetches(well_known_server, "wk.test") == fetch_number - 1
        discovery.clock.now += 1
        await discovery.resolver.resolve("wk.test")
        assert fetches(well_known_server, "wk.test") == fetch_number


async def test_concurrent_lookups_share_one_request(
    discovery: Discovery, well_known_server: WellKnownServer
) -> None:
    well_known(well_known_server, "wk.test", json_handler({"m.server": "other.test:1"}))
    results = await asyncio.gather(*(discovery.resolver.resolve("wk.test") for _ in range(10)))
    assert {address.targets for address in results} == {(("other.test", 1),)}
    assert fetches(well_known_server, "wk.test") == 1


def test_cache_period_from_headers() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)

    def period(**headers: str) -> float:
        return cache_period_s(CIMultiDict(headers), now.timestamp())

    def http_date(moment: datetime) -> str:
        return format_datetime(moment, usegmt=True)

    assert period() == DEFAULT_CACHE_S
    assert period(**{"Cache-Control": "max-age=7200"}) == 7200
    assert period(**{"Cache-Control": "max-age=99999999"}) == MAX_CACHE_S
    assert period(**{"Cache-Control": "no-store"}) == MIN_CACHE_S
    assert period(**{"Cache-Control": "max-age=abc"}) == MIN_CACHE_S
    assert period(Expires=http_date(now + timedelta(hours=3))) == 3 * 3600
    # Expires is relative to the response's own Date when there is one.
    assert (
        period(
            Expires=http_date(now + timedelta(hours=5)), Date=http_date(now + timedelta(hours=1))
        )
        == 4 * 3600
    )
    assert period(Expires="0") == MIN_CACHE_S
    # max-age wins over Expires.
    assert period(**{"Cache-Control": "max-age=600", "Expires": http_date(now)}) == 600


# SRV details.


def test_srv_records_are_ordered_by_priority_then_weight() -> None:
    records = [
        SrvRecord(20, 0, 3, "c.test"),
        SrvRecord(10, 3, 1, "a.test"),
        SrvRecord(10, 1, 2, "b.test"),
    ]
    rng = random.Random(1)
    first_picks: Counter[str] = Counter()
    for _ in range(4000):
        ordered = order_srv_records(records, rng)
        assert ordered[2].target == "c.test"
        assert {r.target for r in ordered[:2]} == {"a.test", "b.test"}
        first_picks[ordered[0].target] += 1
    # Weight 3 against 1: picked first about three times in four.
    assert 0.70 < first_picks["a.test"] / 4000 < 0.80


async def test_srv_target_dot_means_service_not_available(
    discovery: Discovery, dns: FakeDnsServer
) -> None:
    dns.srv_records["_matrix-fed._tcp.srv.test"] = [(0, 0, 0, "")]  # served as "."
    with pytest.raises(DiscoveryError, match="not available"):
        await discovery.resolver.resolve("srv.test")


async def test_unreachable_dns_gives_no_srv_records() -> None:
    async with fake_dns_server({}) as server:
        resolver = server.resolver()
    resolver.lifetime = 0.3  # the server is gone: every query times out
    assert await DnsSrvLookup(resolver)("_matrix-fed._tcp.example.test") == []


async def test_invalid_server_name_is_a_discovery_error(discovery: Discovery) -> None:
    for bad in ["", "exa mple.org", "example.org:port", "[::1", "1.2.3.256"]:
        with pytest.raises(DiscoveryError):
            await discovery.resolver.resolve(bad)
