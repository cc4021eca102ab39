"""The composition root, services half: every service built once per process, wired here.

`build_dependencies` runs at start-up, after migrations and before the listeners: it starts the
room engine, then builds accounts, rooms, /sync, E2EE and federation on top of it.
The rooms part (homeserver/app/rooms.py) and the federation part (homeserver/app/
federation.py) are built in their own modules and composed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from federation.signing import SigningKey
from homeserver.app.federation import (
    build_backfiller,
    build_federation_inbound,
    start_federation_sender,
)
from homeserver.app.rooms import RoomServices
from homeserver.config import Config
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.remote.factory import RemoteServices, create_remote_services
from homeserver.services.accounts import AccountService, DevicesDeletedHook
from homeserver.services.auth import Authenticator
from homeserver.services.credentials import PasswordChecker
from homeserver.services.e2e_setup import E2eeServices
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_sender import FederationSender
from homeserver.services.federation_setup import FederationInboundServices
from homeserver.services.guest_eviction import GuestEviction
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.media import MediaService
from homeserver.services.media_setup import build_media_service
from homeserver.services.notifier import Notifier
from homeserver.services.passwords import PasswordHashing
from homeserver.services.presence_setup import PresenceServices
from homeserver.services.pushers_setup import PusherServices
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.room_reads_setup import RoomReadServices
from homeserver.services.room_upgrade_follow import UpgradeFollower
from homeserver.services.state import RoomStateCache
from homeserver.services.streams import StreamTracker
from homeserver.services.sync_e2ee import E2eeSyncSection
from homeserver.services.sync_setup import SyncServices
from homeserver.services.uia import UserInteractiveAuth
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.events import EventsStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.state import StateStore


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
        cls,
        config: Config,
        pool: asyncpg.Pool,
        hashing: PasswordHashing,
        on_devices_deleted: DevicesDeletedHook | None,
    ) -> AccountServices:
        authenticator = Authenticator(pool)
        passwords = PasswordChecker(pool, config.server_name, hashing)
        return cls(
            auth=ClientAuth(authenticator, RateLimiter(config.rate_limits)),
            passwords=passwords,
            uia=UserInteractiveAuth(pool, passwords),
            accounts=AccountService(
                pool,
                config.server_name,
                authenticator,
                hashing,
                on_devices_deleted=on_devices_deleted,
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
        state = RoomStateCache(
            events, rooms, state_store, event_cache_size=config.caches.event_cache_size
        )
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
    # argon2id hashing of local accounts' passwords (tests pass a cheap one).
    password_hashing: PasswordHashing = field(default_factory=PasswordHashing)
    # The content repository: uploads, downloads (other servers' media too), thumbnails.
    media: MediaService = field(init=False)
    # C-S "Presence"; None when `presence.enabled` is false.
    presence: PresenceServices | None = None
    # Pushers and the HTTP pushers sending to push gateways (C-S "Push Notifications").
    pushers: PusherServices | None = None

    def __post_init__(self) -> None:
        # A deleted device's keys and inbox go, and it is a device list change.
        on_devices_deleted = self.e2ee.keys.on_devices_deleted if self.e2ee else None
        accounts = AccountServices.build(
            self.config, self.pool, self.password_hashing, on_devices_deleted
        )
        object.__setattr__(self, "account_services", accounts)
        federation = None
        if self.remote is not None and self.federation_inbound is not None:
            federation = (self.remote, self.federation_inbound, self.signing_key)
        object.__setattr__(
            self,
            "room_services",
            RoomServices.build(self.config, self.pool, self.engine, federation),
        )
        object.__setattr__(self, "room_reads", RoomReadServices.build(self.pool, self.engine.state))
        # C-S "Ignoring Users": /messages and /context leave out ignored users' events.
        self.room_reads.paginator.ignored = IgnoredUsers(self.sync.account_data)
        remote_client = self.remote.client if self.remote is not None else None
        object.__setattr__(
            self, "media", build_media_service(self.config, self.pool, remote_client)
        )
        if self.remote is not None and self.federation_inbound is not None:
            # /messages fetches older history from the servers in the room (issue 5).
            backfiller = build_backfiller(
                self.config, self.pool, self.engine, self.remote, self.federation_inbound
            )
            self.room_reads.paginator.set_backfill(backfiller)

    async def close(self) -> None:
        self.sync.close()
        self.password_hashing.close()
        if self.presence is not None:
            await self.presence.close()
        if self.pushers is not None:
            await self.pushers.close()
        await self.engine.close()
        if self.federation_sender is not None:
            await self.federation_sender.close()
        if self.e2ee is not None and self.e2ee.remote_keys is not None:
            await self.e2ee.remote_keys.close()  # device list resyncs under way
        if self.remote is not None:
            await self.remote.close()


async def build_dependencies(
    config: Config,
    pool: asyncpg.Pool,
    signing_key: SigningKey,
    schema_version: int,
    password_hashing: PasswordHashing | None = None,
) -> Dependencies:
    """Wire every service once per process, after migrations, before listeners start.

    `password_hashing` defaults to OWASP's argon2id cost (services/passwords.py)."""
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
    if e2ee.remote_keys is not None:
        # Joins can start sharing a room with remote users: their cached keys are refetched.
        engine.pipeline.add_persisted_hook(e2ee.remote_keys.on_events_persisted)
    presence = None
    if config.presence.enabled:
        presence = await PresenceServices.start(
            config.presence,
            pool,
            config.server_name,
            sync=sync,
            rooms=engine.rooms,
            state=engine.state,
            pipeline=engine.pipeline,
            sender=sender,
        )
    if remote is not None and sender is not None:
        inbound = build_federation_inbound(
            config,
            pool,
            signing_key,
            engine=engine,
            sync=sync,
            remote=remote,
            sender=sender,
            e2ee=e2ee,
            presence=presence,
        )
    pushers = PusherServices.build(
        config.pushers,
        pool,
        push=sync.push,
        push_store=sync.push_store,
        rooms=engine.rooms,
        state=engine.state,
    )
    hashing = password_hashing if password_hashing is not None else PasswordHashing()
    deps = Dependencies(
        config,
        pool,
        signing_key,
        schema_version,
        engine,
        sync,
        remote,
        inbound,
        sender,
        e2ee,
        password_hashing=hashing,
        presence=presence,
        pushers=pushers,
    )
    # C-S "Guest Access": guests leave a room whose m.room.guest_access stops being can_join.
    eviction = GuestEviction(pool, engine.state, deps.room_services.membership, config.server_name)
    engine.pipeline.add_persisted_hook(eviction.on_events_persisted)
    return deps


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
