"""Builds the outbound federation stack from the config: one HTTP session whose connector
applies the IP range policy, server discovery, the signed client and the keyring.

homeserver/app.py (the composition root) calls `create_remote_services` once per process,
inside the running event loop, and `close()` at shutdown.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver

from federation.signing import SigningKey, decode_verify_key
from homeserver.config import Config, TrustedKeyServer
from homeserver.remote.client import ClientLimits, FederationClient
from homeserver.remote.discovery import DnsSrvLookup, ServerResolver, SrvLookup
from homeserver.remote.ipfilter import IpRangePolicy, filtered_connector
from homeserver.remote.keyring import Keyring, Notary, OwnKeys
from homeserver.remote.policy import ServerPolicy
from homeserver.remote.well_known import WellKnownResolver


@dataclass(frozen=True, slots=True)
class RemoteServices:
    session: aiohttp.ClientSession
    ip_policy: IpRangePolicy
    server_policy: ServerPolicy
    resolver: ServerResolver
    client: FederationClient
    keyring: Keyring

    async def close(self) -> None:
        await self.session.close()


def tls_setting(verify_tls: bool) -> ssl.SSLContext | bool:
    """`federation.verify_tls`: the system's trust store, or no verification at all.

    True is aiohttp's verifying context, built when aiohttp is imported with
    `ssl.create_default_context()` (the same trust store); a second context of our own would
    load the system's CA certificates again (~0.8 MB, docs/memory.md).
    """
    return verify_tls


def notaries_from_config(trusted: Sequence[TrustedKeyServer]) -> list[Notary]:
    return [
        Notary(
            server_name=server.server_name,
            verify_keys={
                key_id: decode_verify_key(key) for key_id, key in server.verify_keys.items()
            },
        )
        for server in trusted
    ]


def create_remote_services(
    config: Config,
    pool: asyncpg.Pool,
    signing_key: SigningKey,
    *,
    tls: ssl.SSLContext | bool | None = None,
    dns_resolver: AbstractResolver | None = None,
    srv_lookup: SrvLookup | None = None,
    well_known_port: int = 443,
    limits: ClientLimits | None = None,
) -> RemoteServices:
    """Call from within the running event loop. The keyword arguments replace real DNS, the
    system trust store and port 443 in tests."""
    federation = config.federation
    if tls is None:
        tls = tls_setting(federation.verify_tls)
    ip_policy = IpRangePolicy(federation.ip_range_allowlist)
    server_policy = ServerPolicy(
        federation.allowed_servers,
        federation.denied_servers,
        federation_enabled=federation.enabled,
    )
    session = aiohttp.ClientSession(connector=filtered_connector(ip_policy, dns_resolver))
    resolver = ServerResolver(
        WellKnownResolver(session, tls=tls, port=well_known_port),
        srv_lookup if srv_lookup is not None else DnsSrvLookup(),
    )
    client = FederationClient(
        server_name=config.server_name,
        signing_key=signing_key,
        session=session,
        resolver=resolver,
        server_policy=server_policy,
        ip_policy=ip_policy,
        tls=tls,
        limits=limits,
    )
    own = OwnKeys(
        server_name=config.server_name,
        signing_key=signing_key,
        old_verify_keys={
            key_id: (decode_verify_key(old.key), old.expired_ts)
            for key_id, old in config.old_verify_keys.items()
        },
    )
    keyring = Keyring(
        own=own,
        db=pool,
        requester=client,
        notaries=notaries_from_config(federation.trusted_key_servers),
    )
    return RemoteServices(session, ip_policy, server_policy, resolver, client, keyring)
