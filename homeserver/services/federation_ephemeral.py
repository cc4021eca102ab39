"""Local users' typing and read receipts sent to the other servers in the room, as EDUs.

S2S "Typing Notifications" (`m.typing`, sent to the servers of the room's members) and
"Receipts" (`m.receipt`, only `m.read`: private receipts never leave this server). Remote
users' notifications coming back through the typing service are not echoed.

The listeners run inside the client's request (`PUT /typing`, `POST /receipt`): they only hand
the EDU to the sender's background router (`queue_edu_to_room`), which looks up the room's
servers and queues the EDU for each, so the client is answered without waiting for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from federation.ids import server_name_of
from homeserver.services.receipts import READ, ReceiptsService
from homeserver.services.typing import TypingService
from homeserver.storage.sync_data import ReceiptRow

TYPING_EDU: Final = "m.typing"
RECEIPT_EDU: Final = "m.receipt"


class RoomEduSender(Protocol):
    """homeserver/services/federation_sender.py `FederationSender`."""

    def queue_edu_to_room(self, room_id: str, edu_type: str, content: Mapping[str, Any]) -> None:
        """Route the EDU to the room's other servers later, in order; return at once."""


def typing_edu_content(room_id: str, user_id: str, typing: bool) -> dict[str, Any]:
    """S2S "Typing Notifications": `{room_id, user_id, typing}`."""
    return {"room_id": room_id, "user_id": user_id, "typing": typing}


def receipt_edu_content(receipt: ReceiptRow) -> dict[str, Any]:
    """S2S "Receipts": `{room_id: {"m.read": {user_id: {data: {ts, thread_id?}, event_ids}}}}`."""
    data: dict[str, Any] = {"ts": receipt.ts}
    if receipt.thread_id:
        data["thread_id"] = receipt.thread_id
    user_receipt = {"data": data, "event_ids": [receipt.event_id]}
    return {receipt.room_id: {READ: {receipt.user_id: user_receipt}}}


class EphemeralForwarder:
    def __init__(self, sender: RoomEduSender, server_name: str) -> None:
        self._sender = sender
        self._server_name = server_name

    def attach(self, typing: TypingService, receipts: ReceiptsService) -> None:
        typing.add_listener(self.on_typing)
        receipts.add_listener(self.on_receipt)

    async def on_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        if server_name_of(user_id) != self._server_name:
            return  # a remote user's typing, received from their server
        self._sender.queue_edu_to_room(
            room_id, TYPING_EDU, typing_edu_content(room_id, user_id, typing)
        )

    async def on_receipt(self, receipt: ReceiptRow) -> None:
        if receipt.receipt_type != READ or server_name_of(receipt.user_id) != self._server_name:
            return
        self._sender.queue_edu_to_room(receipt.room_id, RECEIPT_EDU, receipt_edu_content(receipt))
