"""Wiring of the inbound side of federation (called from homeserver/app.py): the PDU receiver,
transactions, room reads and the membership handshakes, over the room engine and the keyring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from federation.signing import SigningKey
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_checks import EventKeyring
from homeserver.services.federation_edus import (
    DeviceListSink,
    EduDispatcher,
    PresenceSink,
    ReceiptSink,
    RemoteKeysSink,
    ToDeviceSink,
    TypingSink,
)
from homeserver.services.federation_fetch import FederationRequester, RemoteRoomFetcher
from homeserver.services.federation_inbound import PduReceiver
from homeserver.services.federation_invites import InviteReceiver
from homeserver.services.federation_membership import ResidentMembership
from homeserver.services.federation_reads import FederationReads
from homeserver.services.federation_transactions import TransactionProcessor
from homeserver.services.state import RoomStateCache
from homeserver.storage import users
from homeserver.storage.events import EventsStore
from homeserver.storage.federation_inbound import ReceivedTransactionsStore


def local_user_exists(pool: asyncpg.Pool) -> Callable[[str], Awaitable[bool]]:
    async def exists(user_id: str) -> bool:
        user = await users.get_user(pool, user_id)
        return user is not None and not user.deactivated

    return exists


@dataclass(frozen=True, slots=True)
class FederationInboundServices:
    receiver: PduReceiver
    transactions: TransactionProcessor
    reads: FederationReads
    membership: ResidentMembership
    invites: InviteReceiver

    @classmethod
    def build(
        cls,
        *,
        pool: asyncpg.Pool,
        server_name: str,
        signing_key: SigningKey,
        events: EventsStore,
        state: RoomStateCache,
        pipeline: EventPipeline,
        keyring: EventKeyring,
        requester: FederationRequester | None,
        typing: TypingSink | None = None,
        receipts: ReceiptSink | None = None,
        to_device: ToDeviceSink | None = None,
        device_lists: DeviceListSink | None = None,
        remote_keys: RemoteKeysSink | None = None,
        presence: PresenceSink | None = None,
    ) -> FederationInboundServices:
        fetcher = RemoteRoomFetcher(requester) if requester is not None else None
        receiver = PduReceiver(
            cache=state, events=events, pipeline=pipeline, keyring=keyring, fetcher=fetcher
        )
        transactions = TransactionProcessor(
            receiver=receiver,
            edus=EduDispatcher(
                state,
                typing=typing,
                receipts=receipts,
                to_device=to_device,
                device_lists=device_lists,
                remote_keys=remote_keys,
                presence=presence,
            ),
            store=ReceivedTransactionsStore(pool),
        )
        membership = ResidentMembership(
            cache=state,
            events=events,
            pipeline=pipeline,
            receiver=receiver,
            keyring=keyring,
            server_name=server_name,
            signing_key=signing_key,
        )
        invites = InviteReceiver(
            cache=state,
            pipeline=pipeline,
            keyring=keyring,
            server_name=server_name,
            signing_key=signing_key,
            user_exists=local_user_exists(pool),
        )
        reads = FederationReads(state, events, server_name)
        return cls(receiver, transactions, reads, membership, invites)
