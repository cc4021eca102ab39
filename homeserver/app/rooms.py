"""The composition root, rooms part: writing to rooms (creation, membership, sending,
aliases, the directory, profiles), with the federation clients for rooms on other servers.
`homeserver/app/services.py` composes it with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from federation.signing import SigningKey
from homeserver.config import Config
from homeserver.remote.factory import RemoteServices
from homeserver.services.aliases import AliasService
from homeserver.services.federation_setup import FederationInboundServices
from homeserver.services.membership import MembershipService
from homeserver.services.profiles import ProfileService
from homeserver.services.remote_directory import RemoteDirectoryClient
from homeserver.services.remote_membership import RemoteMembershipClient
from homeserver.services.remote_queries import RemoteProfileClient, RemotePublicRoomsClient
from homeserver.services.room_directory import RoomDirectoryService
from homeserver.services.room_send import RoomSendService
from homeserver.services.rooms import RoomCreationService
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.profiles import ProfilesStore
from homeserver.storage.room_directory import RoomDirectoryStore

if TYPE_CHECKING:
    from homeserver.app.services import RoomEngine

# What joining and inviting across servers needs: the outbound client and keyring, the
# inbound receiver's checks, and our signing key.
RemoteMembershipWiring = tuple[RemoteServices, FederationInboundServices, SigningKey]


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
