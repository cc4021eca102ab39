"""The per-room `ephemeral` part of a /sync response: `m.typing` (C-S "Typing
Notifications") and `m.receipt` (C-S "Receipts"). Used by homeserver/services/sync.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.services.filters import RoomEventFilter, event_matches
from homeserver.services.receipts import ReceiptsService
from homeserver.services.sync_token import SyncToken
from homeserver.services.typing import TypingService


class EphemeralSyncSection:
    def __init__(self, typing: TypingService, receipts: ReceiptsService) -> None:
        self._typing = typing
        self._receipts = receipts

    async def section(
        self,
        user_id: str,
        ephemeral_filter: RoomEventFilter,
        room_ids: Sequence[str],
        since: SyncToken | None,
        now: SyncToken,
    ) -> dict[str, list[dict[str, Any]]]:
        """`room_id → [m.typing, m.receipt]` changed since `since`, as `ephemeral_filter`
        allows; rooms with none are left out."""
        result: dict[str, list[dict[str, Any]]] = {}
        for room_id in self._typing.rooms_changed(
            room_ids, since.typing if since else 0, now.typing
        ):
            result.setdefault(room_id, []).append(self._typing.typing_event(room_id))
        receipts_since = since.receipts if since else 0
        receipts = (
            await self._receipts.receipt_events(user_id, room_ids, receipts_since, now.receipts)
            if receipts_since < now.receipts  # else the range is empty
            else {}
        )
        for room_id, event in receipts.items():
            result.setdefault(room_id, []).append(event)
        return {
            room_id: kept
            for room_id, events in result.items()
            if (kept := [e for e in events if event_matches(ephemeral_filter, e, room_id=room_id)])
        }
