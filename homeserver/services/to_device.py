"""Send-to-device messaging (C-S "Send-to-Device messaging", to_device.yaml; S2S
"Send-to-device messaging").

PUT /sendToDevice/{eventType}/{txnId}: messages for local devices go to their inbox at one new
to-device stream position (waking the recipients' /sync); messages for other servers' users
go out as one durable `m.direct_to_device` EDU per server. The txnId is durable per device: a
retry is answered without sending again. Inbound `m.direct_to_device` EDUs land in the same
inbox.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any, Final

from federation.edus import DirectToDeviceEdu
from federation.ids import is_valid_user_id, server_name_of
from homeserver.errors import MatrixError
from homeserver.services.device_lists import EduSender
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.e2e_keys import E2eKeysStore

ALL_DEVICES: Final = "*"
MAX_MESSAGES: Final = 10_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def parse_messages(body: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """to_device.yaml `messages`: user ID → device ID (or `*`) → content."""
    messages = body.get("messages")
    if not isinstance(messages, dict):
        raise MatrixError(400, "M_BAD_JSON", "messages must be an object")
    count = 0
    for user_id, devices in messages.items():
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", f"{user_id!r} is not a user ID")
        if not isinstance(devices, dict) or not all(
            isinstance(content, dict) for content in devices.values()
        ):
            raise MatrixError(400, "M_BAD_JSON", "messages must map device IDs to objects")
        count += len(devices)
    if count > MAX_MESSAGES:
        raise MatrixError(400, "M_INVALID_PARAM", f"at most {MAX_MESSAGES} messages")
    return messages


class ToDeviceService:
    def __init__(
        self,
        store: E2eKeysStore,
        stream: AuxStream,
        server_name: str,
        sender: EduSender | None = None,
    ) -> None:
        self._store = store
        self._stream = stream
        self._server_name = server_name
        self._sender = sender

    async def send(
        self, sender: str, device_key: str, event_type: str, txn_id: str, body: Mapping[str, Any]
    ) -> None:
        messages = parse_messages(body)
        kind = f"sendToDevice:{event_type}"
        if await self._store.seen_transaction(sender, device_key, kind, txn_id):
            return  # C-S "Transaction identifiers": a retry is not sent again
        local = {u: d for u, d in messages.items() if server_name_of(u) == self._server_name}
        await self.deliver_local(sender, event_type, local)
        await self._send_remote(sender, event_type, messages)
        await self._store.record_transaction(sender, device_key, kind, txn_id, _now_ms())

    async def deliver_local(
        self, sender: str, event_type: str, messages: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Put messages for local devices (`*`: every device of the user) in their inboxes."""
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for user_id, devices in messages.items():
            known = await self._store.list_device_ids(user_id)
            for device_id, content in devices.items():
                targets = known if device_id == ALL_DEVICES else [device_id]
                for target in targets:
                    if target in known:
                        message = {"sender": sender, "type": event_type, "content": content}
                        rows.append((user_id, target, message))
        if not rows:
            return
        async with self._stream.write(user_ids={user for user, _, _ in rows}) as position:
            await self._store.add_to_device_messages(position, rows)

    async def _send_remote(
        self, sender: str, event_type: str, messages: Mapping[str, Mapping[str, Any]]
    ) -> None:
        by_server: dict[str, dict[str, Mapping[str, Any]]] = {}
        for user_id, devices in messages.items():
            server = server_name_of(user_id)
            if server != self._server_name:
                by_server.setdefault(server, {})[user_id] = devices
        if not by_server:
            return
        if self._sender is None:
            raise MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server")
        for server, users in by_server.items():
            content = {
                "sender": sender,
                "type": event_type,
                "message_id": secrets.token_urlsafe(16),
                "messages": users,
            }
            await self._sender.send_edu(server, "m.direct_to_device", content, durable=True)

    async def on_direct_to_device(self, origin: str, edu: DirectToDeviceEdu) -> None:
        """S2S "Send-to-device messaging": an inbound EDU for our users (already restricted to
        the origin's senders)."""
        local = {u: d for u, d in edu.messages.items() if server_name_of(u) == self._server_name}
        await self.deliver_local(edu.sender, edu.type, local)
