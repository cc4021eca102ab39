"""Wiring of end-to-end encryption support (called from homeserver/app.py): key storage,
the device list stream, cross-signing and send-to-device, over /sync's streams."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from homeserver.services.device_lists import DeviceLists, EduSender
from homeserver.services.e2e_cross_signing import CrossSigning
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.remote_device_lists import KeysClient, RemoteDeviceKeys
from homeserver.services.sync_streams import SyncStreams
from homeserver.services.to_device import ToDeviceService
from homeserver.storage.e2e_keys import E2eKeysStore
from homeserver.storage.remote_device_keys import RemoteDeviceKeysStore


@dataclass(frozen=True, slots=True)
class E2eeServices:
    store: E2eKeysStore
    device_lists: DeviceLists
    keys: E2eKeysService
    cross_signing: CrossSigning
    to_device: ToDeviceService
    # The cache of other servers' users' devices and keys; None without federation.
    remote_keys: RemoteDeviceKeys | None = None

    @classmethod
    def build(
        cls,
        pool: asyncpg.Pool,
        server_name: str,
        streams: SyncStreams,
        *,
        remote: KeysClient | None = None,
        sender: EduSender | None = None,
    ) -> E2eeServices:
        """`remote` asks other servers for their users' keys; `sender` sends them to-device
        messages and our device list and signing key updates (both None without federation).
        Other servers' keys are asked through the cache of their users' device lists."""
        store = E2eKeysStore(pool)
        device_lists = DeviceLists(store, streams.device_lists, server_name, sender)
        remote_keys = None
        if remote is not None:
            remote_keys = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), remote, server_name)
        return cls(
            store=store,
            device_lists=device_lists,
            keys=E2eKeysService(store, device_lists, server_name, remote_keys),
            cross_signing=CrossSigning(store, device_lists, sender),
            to_device=ToDeviceService(store, streams.to_device, server_name, sender),
            remote_keys=remote_keys,
        )
