"""The composition root: the only place where dependencies are wired together.

`build_listener_apps` turns the config into one aiohttp `Application` per listening socket.
Client and federation listeners that share `bind:port` become one application serving both
route sets (the config checks they agree on TLS). Handlers receive what they need here, as
arguments; nothing looks dependencies up globally.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import asyncpg
from aiohttp import web

from federation.room_versions import KNOWN_ROOM_VERSIONS
from federation.signing import SigningKey
from homeserver.config import Config, ListenerConfig
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
from homeserver.http.client import keys as keys_http
from homeserver.http.client import membership as membership_http
from homeserver.http.client import notifications as notifications_http
from homeserver.http.client import profile as profile_http
from homeserver.http.client import pushrules as pushrules_http
from homeserver.http.client import receipts as receipts_http
from homeserver.http.client import relations as relations_http
from homeserver.http.client import room_reads as room_reads_http
from homeserver.http.client import room_send as room_send_http
from homeserver.http.client import room_upgrade as room_upgrade_http
from homeserver.http.client import rooms_create as rooms_create_http
from homeserver.http.client import sync as sync_http
from homeserver.http.client import tags as tags_http
from homeserver.http.client import to_device as to_device_http
from homeserver.http.client import typing as typing_http
from homeserver.http.client import user_directory as user_directory_http
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.federation import key_query as federation_key_query
from homeserver.http.federation import keys as federation_keys
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
from homeserver.remote.factory import RemoteServices, create_remote_services
from homeserver.services.accounts import AccountService, DevicesDeletedHook
from homeserver.services.aliases import AliasService
from homeserver.services.auth import Authenticator
from homeserver.services.credentials import PasswordChecker
from homeserver.services.e2e_setup import E2eeServices
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_backfill import RemoteBackfiller
from homeserver.services.federation_ephemeral import EphemeralForwarder
from homeserver.services.federation_queue import Backoff
from homeserver.services.federation_sender import FederationSender
from homeserver.services.federation_setup import FederationInboundServices
from homeserver.services.federation_user_keys import FederationUserKeys
from homeserver.services.membership import MembershipService
from homeserver.services.notifier import Notifier
from homeserver.services.profiles import ProfileService
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.remote_directory import RemoteDirectoryClient
from homeserver.services.remote_membership import RemoteMembershipClient
from homeserver.services.remote_queries import RemoteProfileClient, RemotePublicRoomsClient
from homeserver.services.room_directory import RoomDirectoryService
from homeserver.services.room_reads_setup import RoomReadServices
from homeserver.services.room_send import RoomSendService
from homeserver.services.room_upgrade import RoomUpgradeService
from homeserver.services.room_upgrade_follow import UpgradeFollower
from homeserver.services.rooms import RoomCreationService
from homeserver.services.space_hierarchy import SpaceHierarchy
from homeserver.services.state import RoomStateCache
from homeserver.services.streams import StreamTracker
from homeserver.services.sync_e2ee import E2eeSyncSection
from homeserver.services.sync_setup import SyncServices
from homeserver.services.uia import UserInteractiveAuth
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.events import EventsStore
from homeserver.storage.federation_outbound import FederationOutboundStore
from homeserver.storage.profiles import ProfilesStore
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.state import StateStore

ListenerType = Literal["client", "federation"]
# What joining and inviting across servers needs: the outbound client and keyring, the
# inbound receiver's checks, and our signing key.
RemoteMembershipWiring = tuple[RemoteServices, FederationInboundServices, SigningKey]

CLIENT: Final = "client"
FEDERATION: Final = "federation"


@dataclass(frozen=True, slots=True)
class AccountServices:
    """Accounts and sessions: one set per process, so every listener shares the token cache
    and the rate-limit buckets."""

    auth: ClientAuth  # handed to every client handler module that needs a Requester
    passwords: PasswordChecker
    uia: UserInteractiveAuth
    accounts: AccountService

    @classmethod
    def build(
        cls, config: Config, pool: asyncpg.Pool, on_devices_deleted: DevicesDeletedHook | None
    ) -> AccountServices:
        authenticator = Authenticator(pool)
        passwords = PasswordChecker(pool, config.server_name)
        return cls(
            auth=ClientAuth(authenticator, RateLimiter(config.rate_limits)),
            passwords=passwords,
            uia=UserInteractiveAuth(pool, passwords),
            accounts=AccountService(
                pool, config.server_name, authenticator, on_devices_deleted=on_devices_deleted
            ),
        )


@dataclass(frozen=True, slots=True)
class RoomEngine:
    """Rooms' storage, state cache, stream positions and THE event pipeline (GUIDE.md)."""

    events: EventsStore
    rooms: RoomsStore
    state_store: StateStore
    state: RoomStateCache
    tracker: StreamTracker
    notifier: Notifier
    pipeline: EventPipeline

    @classmethod
    async def start(cls, config: Config, pool: asyncpg.Pool, signing_key: SigningKey) -> RoomEngine:
        events = EventsStore(pool, config.server_name)
        rooms = RoomsStore(pool)
        state_store = StateStore(pool)
        state = RoomStateCache(events, rooms, state_store)
        # Stream positions live in the database, so /sync tokens survive restarts.
        tracker = StreamTracker("events", await events.get_max_stream_ordering())
        notifier = Notifier(tracker)
        pipeline = EventPipeline(
            events=events,
            rooms=rooms,
            state=state,
            notifier=notifier,
            tracker=tracker,
            server_name=config.server_name,
            signing_key=signing_key,
        )
        return cls(events, rooms, state_store, state, tracker, notifier, pipeline)

    async def close(self) -> None:
        await self.pipeline.close()


@dataclass(frozen=True, slots=True)
class RoomServices:
    """Writing to rooms: creation, membership, sending, aliases, the directory, profiles.
    Rooms on other servers need federation; those seams stay None until it is wired."""

    profiles: ProfileService
    aliases: AliasService
    membership: MembershipService
    creation: RoomCreationService
    sending: RoomSendService
    directory: RoomDirectoryService

    @classmethod
    def build(
        cls,
        config: Config,
        pool: asyncpg.Pool,
        engine: RoomEngine,
        federation: RemoteMembershipWiring | None = None,
    ) -> RoomServices:
        server_name, rooms, state = config.server_name, engine.rooms, engine.state
        pipeline, directory_store = engine.pipeline, RoomDirectoryStore(pool)
        remote_membership = None
        if federation is not None:  # rooms on other servers (issue 5)
            remote, inbound, signing_key = federation
            remote_membership = RemoteMembershipClient(
                client=remote.client,
                keyring=remote.keyring,
                receiver=inbound.receiver,
                pipeline=pipeline,
                state=state,
                events=engine.events,
                directory=directory_store,
                server_name=server_name,
                signing_key=signing_key,
            )
        profiles = ProfileService(
            pool=pool,
            profiles=ProfilesStore(pool),
            rooms=rooms,
            state=state,
            pipeline=pipeline,
            server_name=server_name,
            remote_profiles=(
                None if federation is None else RemoteProfileClient(federation[0].client)
            ),
        )
        aliases = AliasService(
            aliases=AliasesStore(pool),
            rooms=rooms,
            state=state,
            pipeline=pipeline,
            server_name=server_name,
            remote_directory=(
                None if federation is None else RemoteDirectoryClient(federation[0].client)
            ),
        )
        membership = MembershipService(
            pool=pool,
            pipeline=pipeline,
            state=state,
            rooms=rooms,
            directory=directory_store,
            aliases=aliases,
            profiles=profiles,
            server_name=server_name,
            remote=remote_membership,
        )
        creation = RoomCreationService(
            pipeline=pipeline,
            aliases=aliases,
            profiles=profiles,
            membership=membership,
            server_name=server_name,
            default_room_version=config.default_room_version,
        )
        sending = RoomSendService(
            pipeline=pipeline, state=state, rooms=rooms, aliases=aliases, server_name=server_name
        )
        directory = RoomDirectoryService(
            rooms=rooms,
            directory=directory_store,
            state=state,
            server_name=server_name,
            remote_public_rooms=(
                None if federation is None else RemotePublicRoomsClient(federation[0].client)
            ),
        )
        return cls(profiles, aliases, membership, creation, sending, directory)


@dataclass(frozen=True, slots=True)
class Dependencies:
    """Everything handlers may need, built once per process by `build_dependencies`."""

    config: Config
    pool: asyncpg.Pool
    signing_key: SigningKey
    # The newest migration this code ships; /health compares the database against it.
    schema_version: int
    engine: RoomEngine
    # /sync and the per-user data around it (typing, receipts, account data, push).
    sync: SyncServices
    account_services: AccountServices = field(init=False)
    room_services: RoomServices = field(init=False)
    # /messages, /context, /event, /state, /members, /relations, user directory.
    room_reads: RoomReadServices = field(init=False)
    # Talking to other servers (keyring, signed client); None when federation is disabled.
    remote: RemoteServices | None = None
    # Serving other servers: /send, room reads, membership handshakes (issue 5).
    federation_inbound: FederationInboundServices | None = None
    # Sending to other servers: per-destination queues of PDUs and EDUs (issue 5).
    federation_sender: FederationSender | None = None
    # Keys, cross-signing, send-to-device (C-S "End-to-End Encryption").
    e2ee: E2eeServices | None = None

    def __post_init__(self) -> None:
        # A deleted device's keys and inbox go, and it is a device list change.
        on_devices_deleted = self.e2ee.keys.on_devices_deleted if self.e2ee else None
        accounts = AccountServices.build(self.config, self.pool, on_devices_deleted)
        object.__setattr__(self, "account_services", accounts)
        federation = None
        if self.remote is not None and self.federation_inbound is not None:
            federation = (self.remote, self.federation_inbound, self.signing_key)
        object.__setattr__(
            self,
            "room_services",
            RoomServices.build(self.config, self.pool, self.engine, federation),
        )
        object.__setattr__(
            self, "room_reads", RoomReadServices.build(self.pool, self.engine.state)
        )
        if self.remote is not None and self.federation_inbound is not None:
            # /messages fetches older history from the servers in the room (issue 5).
            backfiller = RemoteBackfiller(
                requester=self.remote.client,
                receiver=self.federation_inbound.receiver,
                keyring=self.remote.keyring,
                cache=self.engine.state,
                events=self.engine.events,
                pipeline=self.engine.pipeline,
                server_name=self.config.server_name,
            )
            self.room_reads.paginator.set_backfill(backfiller)

    async def close(self) -> None:
        self.sync.close()
        await self.engine.close()
        if self.federation_sender is not None:
            await self.federation_sender.close()
        if self.remote is not None:
            await self.remote.close()


async def build_dependencies(
    config: Config, pool: asyncpg.Pool, signing_key: SigningKey, schema_version: int
) -> Dependencies:
    """Wire every service once per process, after migrations, before listeners start."""
    engine = await RoomEngine.start(config, pool, signing_key)
    sync = await SyncServices.start(
        pool,
        config.server_name,
        events=engine.events,
        rooms=engine.rooms,
        state=engine.state,
        notifier=engine.notifier,
        pipeline=engine.pipeline,
    )
    # C-S "Room Upgrades": a local user joining a replacement room keeps their settings.
    follower = UpgradeFollower(
        state=engine.state,
        rooms=engine.rooms,
        aliases=AliasesStore(pool),
        account_data=sync.account_data,
        push=sync.push,
        server_name=config.server_name,
    )
    engine.pipeline.add_persisted_hook(follower.on_events_persisted)
    remote = inbound = sender = None
    if config.federation.enabled:
        remote = create_remote_services(config, pool, signing_key)
        sender = await start_federation_sender(config, pool, engine, remote)
    e2ee = build_e2ee(config, pool, sync, remote, sender)
    if remote is not None and sender is not None:
        inbound = FederationInboundServices.build(
            pool=pool,
            server_name=config.server_name,
            signing_key=signing_key,
            events=engine.events,
            state=engine.state,
            pipeline=engine.pipeline,
            keyring=remote.keyring,
            requester=remote.client,
            typing=sync.typing,
            receipts=sync.receipts,
            to_device=e2ee.to_device,
            device_lists=e2ee.device_lists,
        )
        # Local users' typing and read receipts go to the other servers in the room.
        EphemeralForwarder(sender, config.server_name).attach(sync.typing, sync.receipts)
        # Joins, leaves and knocks we accept as resident server go on to the room's servers.
        inbound.membership.set_relay(sender.relay_event)
    return Dependencies(
        config, pool, signing_key, schema_version, engine, sync, remote, inbound, sender, e2ee
    )


def build_e2ee(
    config: Config,
    pool: asyncpg.Pool,
    sync: SyncServices,
    remote: RemoteServices | None,
    sender: FederationSender | None,
) -> E2eeServices:
    """End-to-end encryption over /sync's to-device and device list streams; other servers'
    keys through the federation client."""
    e2ee = E2eeServices.build(
        pool,
        config.server_name,
        sync.streams,
        remote=remote.client if remote is not None else None,
        sender=sender,
    )
    sync.sync.e2ee = E2eeSyncSection(e2ee.keys)
    return e2ee


async def start_federation_sender(
    config: Config, pool: asyncpg.Pool, engine: RoomEngine, remote: RemoteServices
) -> FederationSender:
    """Outbound federation: resumes queued work, then follows every event the pipeline
    persists (it forwards only our users' events)."""
    sender = FederationSender(
        store=FederationOutboundStore(pool),
        client=remote.client,
        stream=engine.tracker,
        server_name=config.server_name,
        server_policy=remote.server_policy,
        enabled=config.federation.enabled,
        backoff=Backoff(
            initial_ms=int(config.federation.retry_initial * 1000),
            max_ms=int(config.federation.retry_max * 1000),
        ),
    )
    await sender.start()
    engine.pipeline.add_persisted_hook(sender.on_events_persisted)
    return sender


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
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_certificate, self.tls_private_key)
        return context


def listener_specs(listeners: Iterable[ListenerConfig]) -> list[ListenerSpec]:
    """Group listeners by socket; port 0 (any free port) always gets a socket of its own."""
    grouped: dict[tuple[str, int] | int, ListenerSpec] = {}
    for index, listener in enumerate(listeners):
        key: tuple[str, int] | int = (
            index if listener.port == 0 else (listener.bind, listener.port)
        )
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


def _add_sync_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    auth, sync, state = deps.account_services.auth, deps.sync, deps.engine.state
    sync_http.add_routes(router, auth, sync.sync, sync.filters)
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
    admin_register.add_routes(
        router, deps.pool, accounts, config.registration.shared_secret
    )


def _add_federation_routes(router: web.UrlDispatcher, deps: Dependencies) -> None:
    config = deps.config
    federation_version.add_routes(router)
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
