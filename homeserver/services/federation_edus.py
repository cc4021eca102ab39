"""EDUs received in transactions: typing, receipts, presence, to-device, device lists.

S2S "EDUs" and the sections of each type: every EDU speaks only for users of the sending server
(`restrict_edu_to_origin` drops the rest); room EDUs of a server the room's ACL denies are
ignored (S2S "Server ACLs"); a malformed EDU is dropped alone, never failing the transaction.
Each kind goes to the service that handles it, when this server has one; otherwise it is
ignored (logged at debug level).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from federation.edus import (
    DeviceListUpdateEdu,
    DirectToDeviceEdu,
    ParsedEdu,
    PresenceEdu,
    Receipt,
    ReceiptEdu,
    SigningKeyUpdateEdu,
    TypingEdu,
    parse_edu,
    restrict_edu_to_origin,
)
from federation.room_state import MEMBER
from federation.wire import WireFormatError
from homeserver.services.federation_access import server_acl_allows
from homeserver.services.state import RoomStateCache

logger = logging.getLogger(__name__)


class TypingSink(Protocol):
    """homeserver/services/typing.py `TypingService`."""

    async def set_typing(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None: ...


class ReceiptSink(Protocol):
    """Stores a read receipt of a remote user (the receipts service, when it offers this)."""

    async def on_remote_receipt(self, receipt: Receipt) -> None: ...


class ToDeviceSink(Protocol):
    """homeserver/services/to_device.py `ToDeviceService`."""

    async def on_direct_to_device(self, origin: str, edu: DirectToDeviceEdu) -> None: ...


class DeviceListSink(Protocol):
    """homeserver/services/device_lists.py `DeviceLists`."""

    async def mark_changed(self, user_id: str) -> int: ...


class RemoteKeysSink(Protocol):
    """homeserver/services/remote_device_lists.py `RemoteDeviceKeys`: the cache of remote
    users' devices and keys."""

    async def on_device_list_update(self, edu: DeviceListUpdateEdu) -> None: ...

    async def on_signing_key_update(self, edu: SigningKeyUpdateEdu) -> None: ...


class PresenceSink(Protocol):
    """homeserver/services/presence_federation.py `PresenceEduSink`."""

    async def on_presence(self, origin: str, edu: PresenceEdu) -> None: ...


class EduDispatcher:
    def __init__(
        self,
        cache: RoomStateCache,
        *,
        typing: TypingSink | None = None,
        receipts: ReceiptSink | None = None,
        to_device: ToDeviceSink | None = None,
        device_lists: DeviceListSink | None = None,
        remote_keys: RemoteKeysSink | None = None,
        presence: PresenceSink | None = None,
    ) -> None:
        self._cache = cache
        self._typing = typing
        self._receipts = receipts
        self._to_device = to_device
        self._device_lists = device_lists
        self._remote_keys = remote_keys
        self._presence = presence

    async def on_edu(self, origin: str, edu: Mapping[str, Any]) -> None:
        """Handle one EDU from `origin`; never raises for bad input."""
        try:
            parsed = parse_edu(edu)
        except WireFormatError as exc:
            logger.info("dropping a malformed EDU from %s: %s", origin, exc)
            return
        if parsed is None:
            return  # an EDU type we do not know: ignored
        restricted = restrict_edu_to_origin(parsed, origin)
        if restricted is None:
            logger.info("dropping an EDU from %s about another server's users", origin)
            return
        await self._dispatch(origin, restricted)

    async def _dispatch(self, origin: str, edu: ParsedEdu) -> None:
        if isinstance(edu, TypingEdu):
            await self._on_typing(origin, edu)
        elif isinstance(edu, ReceiptEdu):
            await self._on_receipts(origin, edu)
        elif isinstance(edu, PresenceEdu) and self._presence is not None:
            # S2S "Presence": already restricted to the origin's own users.
            await self._presence.on_presence(origin, edu)
        elif isinstance(edu, DirectToDeviceEdu) and self._to_device is not None:
            await self._to_device.on_direct_to_device(origin, edu)
        elif isinstance(edu, DeviceListUpdateEdu | SigningKeyUpdateEdu):
            await self._on_key_change(edu)
        else:
            logger.debug("no handler for %s from %s", type(edu).__name__, origin)

    async def _on_key_change(self, edu: DeviceListUpdateEdu | SigningKeyUpdateEdu) -> None:
        """S2S "Device Management" / "End-to-End Encryption": the cache of the user's keys is
        updated (homeserver/services/remote_device_lists.py), then local users sharing a room
        see the user under device_lists.changed and query the keys again."""
        if self._remote_keys is not None:
            if isinstance(edu, DeviceListUpdateEdu):
                await self._remote_keys.on_device_list_update(edu)
            else:
                await self._remote_keys.on_signing_key_update(edu)
        if self._device_lists is not None:
            await self._device_lists.mark_changed(edu.user_id)

    async def _on_typing(self, origin: str, edu: TypingEdu) -> None:
        """S2S "Typing Notifications": only for a user joined to the room."""
        if self._typing is None or not await self._room_accepts(origin, edu.room_id):
            return
        if not await self._is_joined(edu.room_id, edu.user_id):
            return
        await self._typing.set_typing(edu.room_id, edu.user_id, edu.typing)

    async def _on_receipts(self, origin: str, edu: ReceiptEdu) -> None:
        """S2S "Receipts": each room's receipts are ignored if the ACL denies the origin."""
        if self._receipts is None:
            logger.debug("receipts from %s ignored: no receipts handler", origin)
            return
        allowed: dict[str, bool] = {}
        for receipt in edu.receipts:
            if receipt.room_id not in allowed:
                allowed[receipt.room_id] = await self._room_accepts(origin, receipt.room_id)
            if allowed[receipt.room_id] and await self._is_joined(receipt.room_id, receipt.user_id):
                await self._receipts.on_remote_receipt(receipt)

    async def _room_accepts(self, origin: str, room_id: str) -> bool:
        if await self._cache.get_room_version(room_id) is None:
            return False
        return await server_acl_allows(self._cache, room_id, origin)

    async def _is_joined(self, room_id: str, user_id: str) -> bool:
        member = await self._cache.get_current_state(room_id, [(MEMBER, user_id)])
        event = member.get((MEMBER, user_id))
        return event is not None and event.membership == "join"
