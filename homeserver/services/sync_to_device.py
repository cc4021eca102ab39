"""The `to_device` part of a /sync response (C-S "Send-to-Device messaging", "Extensions to
/sync"). Used by homeserver/services/sync.py."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from homeserver.services.sync_token import SyncToken
from homeserver.storage.sync_data import SyncDataStore

# To-device messages in one response; the rest come with the next /sync.
TO_DEVICE_LIMIT: Final = 100
_ACKNOWLEDGED_DEVICES: Final = 100_000


class ToDeviceSyncSection:
    def __init__(self, store: SyncDataStore) -> None:
        self._store = store
        # (user_id, device_id) → to-device position up to which messages are deleted.
        self._acknowledged: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def section(
        self, user_id: str, device_id: str | None, since: SyncToken | None, now: SyncToken
    ) -> tuple[list[dict[str, Any]], int]:
        """Messages up to `now`, and the to-device position for `next_batch`; those up to
        `since` were delivered by the previous response, so are deleted. At most
        TO_DEVICE_LIMIT go in one response: when more wait, the position is the last one
        sent's, so nothing is deleted undelivered and the next /sync (having messages)
        answers at once."""
        if device_id is None:
            return [], now.to_device
        device = (user_id, device_id)
        if since is not None and since.to_device > self._acknowledged.get(device, 0):
            await self._store.delete_to_device_messages(user_id, device_id, since.to_device)
            self._acknowledge(device, since.to_device)
        if since is not None and since.to_device >= now.to_device:
            return [], now.to_device  # all up to `now` was delivered before and is deleted
        rows = await self._store.get_to_device_messages(
            user_id, device_id, now.to_device, TO_DEVICE_LIMIT + 1
        )
        if len(rows) > TO_DEVICE_LIMIT:
            rows = rows[:TO_DEVICE_LIMIT]
            return [message for _, message in rows], rows[-1][0]
        return [message for _, message in rows], now.to_device

    def _acknowledge(self, device: tuple[str, str], position: int) -> None:
        """Remember that messages up to `position` are deleted (no repeated DELETE)."""
        self._acknowledged[device] = position
        self._acknowledged.move_to_end(device)
        while len(self._acknowledged) > _ACKNOWLEDGED_DEVICES:
            self._acknowledged.popitem(last=False)
