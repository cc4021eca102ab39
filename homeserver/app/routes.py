"""The composition root, HTTP half: listeners and the routes each serves.

`build_listener_apps` turns the config into one aiohttp `Application` per listening socket.
Client and federation listeners that share `bind:port` become one application serving both
route sets (the config checks they agree on TLS). Handlers receive what they need here, as
arguments; nothing looks dependencies up globally.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from federation.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.app.services import Dependencies
from homeserver.config import ListenerConfig
from homeserver.errors import error_middleware
from homeserver.http import health
from homeserver.http.client import (
    account,
    admin_register,
    capabilities,
    devices,
    login,
    register,
    versions,
)
from homeserver.http.client import account_data as account_data_http
from homeserver.http.client import directory as directory_http
from homeserver.http.client import filter as filter_http
from homeserver.http.client import hierarchy as hierarchy_http
from homeserver.http.client import key_backup as key_backup_http
from homeserver.http.client import keys as keys_http
from homeserver.http.client import legacy as legacy_http
from homeserver.http.client import media as media_http
from homeserver.http.client import membership as membership_http
from homeserver.http.client import notifications as notifications_http
from homeserver.http.client import openid as openid_http
from homeserver.http.client import presence as presence_http
from homeserver.http.client import profile as profile_http
from homeserver.http.client import pushers as pushers_http
from homeserver.http.client import pushrules as pushrules_http
from homeserver.http.client import receipts as receipts_http
from homeserver.http.client import relations as relations_http
from homeserver.http.client import reports as reports_http
from homeserver.http.client import room_reads as room_reads_http
from homeserver.http.client import room_send as room_send_http
from homeserver.http.client import room_summary as room_summary_http
from homeserver.http.client import room_upgrade as room_upgrade_http
from homeserver.http.client import rooms_create as rooms_create_http
from homeserver.http.client import search as search_http
from homeserver.http.client import support as support_http
from homeserver.http.client import sync as sync_http
from homeserver.http.client import tags as tags_http
from homeserver.http.client import threepids as threepids_http
from homeserver.http.client import timestamp_lookup as timestamp_http
from homeserver.http.client import to_device as to_device_http
from homeserver.http.client import typing as typing_http
from homeserver.http.client import user_directory as user_directory_http
from homeserver.http.client import voip as voip_http
from homeserver.http.federation import key_query as federation_key_query
from homeserver.http.federation import keys as federation_keys
from homeserver.http.federation import media as federation_media
from homeserver.http.federation import public_rooms as federation_public_rooms
from homeserver.http.federation import routes as federation_routes
from homeserver.http.federation import version as federation_version
from homeserver.http.federation.auth import FederationAuth
from homeserver.http.middleware import (
    REQUEST_LIMITS,
    RequestLimits,
    access_log_middleware,
    body_limit_middleware,
    cors_middleware,
)
from homeserver.services.event_stream import EventStream
from homeserver.services.federation_user_keys import FederationUserKeys
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.legacy_sync import LegacySync
from homeserver.services.openid import OpenIdTokens
from homeserver.services.remote_room_summary import RemoteRoomSummaries
from homeserver.services.reports import ReportService
from homeserver.services.room_summary import RoomSummaries
from homeserver.services.room_upgrade import RoomUpgradeService
from homeserver.services.search import SearchService
from homeserver.services.space_hierarchy import SpaceHierarchy
from homeserver.services.timestamp_lookup import TimestampLookup
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.legacy_reads import LegacyReadsStore
from homeserver.storage.room_directory import RoomDirectoryStore

ListenerType = Literal["client", "federation"]

CLIENT: Final = "client"
FEDERATION: Final = "federation"


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One socket to bind and what it serves."""

    bind: str
    port: int
    types: frozenset[ListenerType]
    tls_certificate: str | None
    tls_private_key: str | None

    @property
    def address(self) -> str:
        return f"[{self.bind}]:{self.port}" if ":" in self.bind else f"{self.bind}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_certificate is None or self.tls_private_key is None:
            return None
        # A server context only: requests are authenticated at the HTTP layer (S2S "Client TLS
        # Certificates"), so no client certificate is asked for and no CA store is loaded to
        # verify one (docs/memory.md). TLS 1.2 at least.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_certificate, self.tls_private_key)
        return context


def listener_specs(listeners: Iterable[ListenerConfig]) -> list[ListenerSpec]:
    """Group listeners by socket; port 0 (any free port) always gets a socket of its own."""
    grouped: dict[tuple[str, int] | int, ListenerSpec] = {}
    for index, listener in enumerate(listeners):
        key: tuple[str, int] | int = index if listener.port == 0 else (listener.bind, listener.port)
        cert = str(listener.tls_certificate) if listener.tls_certificate else None
        private_key = str(listener.tls_private_key) if listener.tls_private_key else None
        previous = grouped.get(key)
        types: frozenset[ListenerType] = frozenset({listener.type})
        if previous is not None:
            types = previous.types | types
        grouped[key] = ListenerSpec(listener.bind, listener.port, types, cert, private_key)
    return list(grouped.values())


def build_application(deps: Dependencies, types: frozenset[ListenerType]) -> web.Application:
    config = deps.config
    app = web.Application(
        middlewares=[
            access_log_middleware,
            cors_middleware,
            error_middleware,
            body_limit_middleware,
        ],
        # Handlers that call request.read()/json() are bounded too; streaming handlers (media)
        # enforce their own limit via `max_body_size` (homeserver/http/middleware.py).
        client_max_size=config.limits.max_request_body,
    )
    app[REQUEST_LIMITS] = RequestLimits(
        max_request_body=config.limits.max_request_body,
        max_json_depth=config.limits.max_json_depth,
    )
    if CLIENT in types:
        _add_client_routes(app.router, deps)
    if FEDERATION in types and config.federation.enabled:
        _add_federation_routes(app.router, deps)
    return app


def _add_client_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    versions.add_routes(router, deps.config)
    health.add_routes(router, deps.pool, deps.schema_version)
    _add_account_routes(router, deps)
    _add_room_routes(router, deps)
    _add_room_read_routes(router, deps)
    _add_sync_routes(router, deps)
    _add_legacy_and_report_routes(router, deps)
    _add_backup_and_search_routes(router, deps)
    _add_misc_client_routes(router, deps)
    media_http.add_routes(router, deps.account_services.auth, deps.media)


def _add_sync_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    auth, sync, state = deps.account_services.auth, deps.sync, deps.engine.state
    presence = deps.presence.presence if deps.presence is not None else None
    sync_http.add_routes(router, auth, sync.sync, sync.filters, presence)
    presence_http.add_routes(router, auth, presence)
    if deps.pushers is not None:
        pushers_http.add_routes(router, auth, deps.pushers.pushers)
    filter_http.add_routes(router, auth, sync.filters)
    typing_http.add_routes(router, auth, sync.typing, state)
    receipts_http.add_routes(router, auth, sync.receipts)
    account_data_http.add_routes(router, auth, sync.account_data)
    tags_http.add_routes(router, auth, sync.account_data)
    pushrules_http.add_routes(router, auth, sync.push)
    notifications_http.add_routes(router, auth, sync.push_store, state)
    if deps.e2ee is not None:
        keys_http.add_routes(
            router, auth, deps.e2ee.keys, deps.e2ee.cross_signing, deps.account_services.uia
        )
        to_device_http.add_routes(router, auth, deps.e2ee.to_device)


def _add_legacy_and_report_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    """Deprecated initialSync and /events, timestamp_to_event, content reports."""
    auth, reads, engine = deps.account_services.auth, deps.room_reads, deps.engine
    legacy_store = LegacyReadsStore(deps.pool)
    legacy = LegacySync(
        reader=reads.reader,
        paginator=reads.paginator,
        rooms=engine.rooms,
        directory=RoomDirectoryStore(deps.pool),
        account_data=deps.sync.account_data,
        notifier=engine.notifier,
    )
    stream = EventStream(
        reader=reads.reader, store=legacy_store, rooms=engine.rooms, notifier=engine.notifier
    )
    legacy_http.add_routes(router, auth, legacy, stream)
    timestamp_http.add_routes(router, auth, TimestampLookup(reads.reader, legacy_store))
    reports = ReportService(deps.pool, reads.reader, deps.config.server_name)
    reports_http.add_routes(router, auth, reports)


def _add_backup_and_search_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    """Server-side key backups and server-side search."""
    auth, reads = deps.account_services.auth, deps.room_reads
    key_backup_http.add_routes(router, auth, KeyBackupService(KeyBackupStore(deps.pool)))
    search_http.add_routes(router, auth, SearchService(deps.pool, reads.reader, reads.paginator))


def _add_misc_client_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    """OpenID tokens, third-party identifiers (none), TURN credentials, support contacts,
    room summaries."""
    auth, config = deps.account_services.auth, deps.config
    openid_http.add_routes(router, auth, OpenIdTokens(deps.pool, config.server_name))
    threepids_http.add_routes(router, auth)
    voip_http.add_routes(router, auth, config.voip)
    support_http.add_routes(router, config.support)
    remote = None
    if deps.remote is not None:  # rooms this server is not in are asked of others
        remote = RemoteRoomSummaries(deps.remote.client, config.server_name)
    directory = RoomDirectoryStore(deps.pool)
    summaries = RoomSummaries(deps.engine.state, deps.room_services.aliases, directory, remote)
    room_summary_http.add_routes(router, auth, summaries)


def _add_room_read_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    auth, reads = deps.account_services.auth, deps.room_reads
    room_reads_http.add_routes(router, auth, reads.reader, reads.paginator)
    relations_http.add_routes(router, auth, reads.relations)
    user_directory_http.add_routes(router, auth, reads.user_directory)
    hierarchy_http.add_routes(router, auth, SpaceHierarchy(deps.engine.state))


def _add_room_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    auth, services = deps.account_services.auth, deps.room_services
    rooms_create_http.add_routes(router, auth, services.creation)
    membership_http.add_routes(router, auth, services.membership)
    room_send_http.add_routes(router, auth, services.sending)
    directory_http.add_routes(router, auth, services.aliases, services.directory)
    profile_http.add_routes(router, auth, services.profiles)
    engine = deps.engine
    upgrades = RoomUpgradeService(
        pipeline=engine.pipeline,
        state=engine.state,
        rooms=engine.rooms,
        aliases=AliasesStore(deps.pool),
        profiles=services.profiles,
        server_name=deps.config.server_name,
    )
    room_upgrade_http.add_routes(router, auth, upgrades)


def _add_account_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    config, services = deps.config, deps.account_services
    auth, accounts, uia = services.auth, services.accounts, services.uia
    register.add_routes(
        router, auth, accounts, uia, registration_enabled=config.registration.enabled
    )
    login.add_routes(
        router,
        auth,
        accounts,
        services.passwords,
        client_base_url=versions.client_base_url(config),
    )
    account.add_routes(router, auth, accounts, uia)
    devices.add_routes(router, auth, accounts, uia)
    capabilities.add_routes(router, auth, KNOWN_ROOM_VERSIONS, config.default_room_version)
    admin_register.add_routes(router, deps.pool, accounts, config.registration.shared_secret)


def _add_federation_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    config = deps.config
    federation_version.add_routes(router)
    # S2S "OpenID": third parties check the tokens of POST /user/{userId}/openid/request_token.
    openid_http.add_userinfo_route(router, OpenIdTokens(deps.pool, config.server_name))
    server_keys = federation_keys.ServerKeysResource(
        server_name=config.server_name,
        signing_key=deps.signing_key,
        valid_for=config.key_valid_for,
        old_verify_keys={
            key_id: (old.key, old.expired_ts) for key_id, old in config.old_verify_keys.items()
        },
    )
    federation_keys.add_routes(router, server_keys)
    if deps.remote is not None:
        # S2S "Querying Keys Through Another Server": we answer as a notary.
        federation_key_query.add_routes(
            router,
            federation_key_query.KeyQueryResource(
                server_name=config.server_name,
                signing_key=deps.signing_key,
                own_key_response=server_keys.body,
                keyring=deps.remote.keyring,
                db=deps.pool,
            ),
        )
    if deps.remote is not None and deps.federation_inbound is not None:
        sender = deps.federation_sender
        auth = FederationAuth(
            deps.remote.keyring,
            deps.remote.server_policy,
            # Any authenticated request proves the peer alive: end its backoff.
            on_origin_seen=sender.on_inbound_request if sender is not None else None,
        )
        federation_public_rooms.add_routes(router, auth, deps.room_services.directory)
        federation_media.add_routes(router, auth, deps.media)
        federation_routes.add_routes(
            router,
            auth,
            deps.federation_inbound,
            server_name=config.server_name,
            aliases=deps.room_services.aliases,
            profiles=deps.room_services.profiles,
            devices_and_keys=FederationUserKeys(
                deps.pool, config.server_name, deps.e2ee.keys if deps.e2ee else None
            ),
            hierarchy=SpaceHierarchy(deps.engine.state),
        )


def build_listener_apps(deps: Dependencies) -> list[tuple[ListenerSpec, web.Application]]:
    return [
        (spec, build_application(deps, spec.types))
        for spec in listener_specs(deps.config.listeners)
    ]
