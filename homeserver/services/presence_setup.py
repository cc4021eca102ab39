"""Wiring of presence (called from homeserver/app/services.py when `presence.enabled`): the
service and its stream, the /sync section, activity from the event pipeline and, with
federation, the EDU forwarder and the inbound sink."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from homeserver.config import PresenceConfig
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_sender import FederationSender
from homeserver.services.presence import PresenceService
from homeserver.services.presence_federation import PresenceEduSink, PresenceForwarder
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_presence import PresenceSyncSection
from homeserver.services.sync_setup import SyncServices
from homeserver.storage.federation_outbound import FederationOutboundStore
from homeserver.storage.presence import PresenceStore
from homeserver.storage.rooms import RoomsStore


@dataclass(frozen=True, slots=True)
class PresenceServices:
    presence: PresenceService
    edu_sink: PresenceEduSink

    @classmethod
    async def start(
        cls,
        config: PresenceConfig,
        pool: asyncpg.Pool,
        server_name: str,
        *,
        sync: SyncServices,
        rooms: RoomsStore,
        state: RoomStateCache,
        pipeline: EventPipeline,
        sender: FederationSender | None,
    ) -> PresenceServices:
        presence = PresenceService(
            store=PresenceStore(pool),
            stream=PresenceService.new_stream(),
            rooms_of_user=rooms.get_rooms_for_user,
            server_name=server_name,
            idle_timeout_ms=int(config.idle_timeout * 1000),
            offline_timeout_ms=int(config.offline_timeout * 1000),
        )
        await presence.start()
        # /sync covers the presence stream and returns the section.
        sync.streams.presence = presence.stream
        sync.sync.presence = PresenceSyncSection(presence, state)
        pipeline.add_persisted_hook(presence.on_events_persisted)
        if sender is not None:
            joined_servers = FederationOutboundStore(pool).get_joined_servers
            PresenceForwarder(presence, sender, joined_servers, server_name).attach()
        return cls(presence, PresenceEduSink(presence))

    async def close(self) -> None:
        await self.presence.close()
