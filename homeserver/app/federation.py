"""The composition root, federation part: the outbound sender, the inbound receiver with what
hangs off it, and remote backfill. `homeserver/app/services.py` composes them with the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from federation.signing import SigningKey
from homeserver.config import Config
from homeserver.remote.factory import RemoteServices
from homeserver.services.e2e_setup import E2eeServices
from homeserver.services.event_pipeline import now_ms
from homeserver.services.federation_backfill import RemoteBackfiller
from homeserver.services.federation_ephemeral import EphemeralForwarder
from homeserver.services.federation_promote import OutlierPromoter
from homeserver.services.federation_queue import Backoff
from homeserver.services.federation_sender import FederationSender
from homeserver.services.federation_setup import FederationInboundServices
from homeserver.services.presence_setup import PresenceServices
from homeserver.services.sync_setup import SyncServices
from homeserver.storage.federation_outbound import FederationOutboundStore
from homeserver.storage.outliers import OutlierStore

if TYPE_CHECKING:
    from homeserver.app.services import RoomEngine


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
        joined_members=engine.state.get_joined_members,
    )
    await sender.start()
    engine.pipeline.add_persisted_hook(sender.on_events_persisted)
    return sender


def build_federation_inbound(
    config: Config,
    pool: asyncpg.Pool,
    signing_key: SigningKey,
    *,
    engine: RoomEngine,
    sync: SyncServices,
    remote: RemoteServices,
    sender: FederationSender,
    e2ee: E2eeServices,
    presence: PresenceServices | None,
) -> FederationInboundServices:
    """Serving other servers: /send and its EDUs, room reads, membership handshakes."""
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
        remote_keys=e2ee.remote_keys,
        presence=presence.edu_sink if presence is not None else None,
    )
    # Outliers received again through /send join the timeline (S2S receipt checks).
    inbound.receiver.set_promoter(
        OutlierPromoter(
            outliers=OutlierStore(pool),
            events=engine.events,
            cache=engine.state,
            pipeline=engine.pipeline,
            notifier=engine.notifier,
            tracker=engine.tracker,
            server_name=config.server_name,
            clock=now_ms,
        )
    )
    # Local users' typing and read receipts go to the other servers in the room.
    EphemeralForwarder(sender, config.server_name).attach(sync.typing, sync.receipts)
    # Joins, leaves and knocks we accept as resident server go on to the room's servers.
    inbound.membership.set_relay(sender.relay_event)
    return inbound


def build_backfiller(
    config: Config,
    pool: asyncpg.Pool,
    engine: RoomEngine,
    remote: RemoteServices,
    inbound: FederationInboundServices,
) -> RemoteBackfiller:
    """/messages fetches older history from the servers in the room (issue 5)."""
    return RemoteBackfiller(
        requester=remote.client,
        receiver=inbound.receiver,
        keyring=remote.keyring,
        cache=engine.state,
        events=engine.events,
        pipeline=engine.pipeline,
        server_name=config.server_name,
        outliers=OutlierStore(pool),
    )
