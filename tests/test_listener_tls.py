"""The TLS context of a listener with a certificate (homeserver/app/routes.py)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from homeserver.app import ListenerSpec
from homeserver.tls import write_self_signed_certificate


@pytest.fixture
def spec(tmp_path: Path) -> ListenerSpec:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_self_signed_certificate(cert, key)
    return ListenerSpec("127.0.0.1", 0, frozenset({"federation"}), str(cert), str(key))


def test_listener_without_certificate_has_no_tls() -> None:
    assert ListenerSpec("127.0.0.1", 0, frozenset({"client"}), None, None).ssl_context() is None


def test_server_context_asks_for_no_client_certificate_and_loads_no_ca_store(
    spec: ListenerSpec,
) -> None:
    context = spec.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


async def _handshake(spec: ListenerSpec, client: ssl.SSLContext) -> str | None:
    server_context = spec.ssl_context()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(5))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        writer.write(b"hello")
        assert await reader.read(5) == b"hello"
        version: str | None = writer.get_extra_info("ssl_object").version()
        writer.close()
        return version
    finally:
        server.close()
        await server.wait_closed()


def _client(maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        # A client that would go as low as `maximum` allows: any refusal is the server's.
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
        client.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        client.maximum_version = maximum
    return client


async def test_clients_complete_a_handshake_with_tls_1_2_or_later(spec: ListenerSpec) -> None:
    assert await _handshake(spec, _client()) == "TLSv1.3"
    assert await _handshake(spec, _client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_client_limited_to_tls_1_1_is_refused(spec: ListenerSpec) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _handshake(spec, _client(ssl.TLSVersion.TLSv1_1))
