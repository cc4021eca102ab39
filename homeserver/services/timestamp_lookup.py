"""The event closest to a point in time: `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
(C-S "Getting events for a room", `room_event_by_timestamp.yaml`, added in v1.6).

Looked up in what this server holds; asking other servers for a closer event (the S2S endpoint
of the same name) is not done. The user must be able to read the room (403 `M_FORBIDDEN`
otherwise, as for /messages) and the answer is the closest event they may see under the
history visibility rules; 404 `M_NOT_FOUND` when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from homeserver.errors import MatrixError
from homeserver.services.room_reads import RoomReader
from homeserver.storage.legacy_reads import LegacyReadsStore

BATCH: Final = 50
# Events looked at before giving up when the closest ones are all hidden from the user.
MAX_BATCHES: Final = 8


@dataclass(frozen=True, slots=True)
class ClosestEvent:
    event_id: str
    origin_server_ts: int

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "origin_server_ts": self.origin_server_ts}


class TimestampLookup:
    def __init__(self, reader: RoomReader, store: LegacyReadsStore) -> None:
        self._reader = reader
        self._store = store

    async def closest_event(
        self, room_id: str, user_id: str, ts: int, direction: Literal["b", "f"]
    ) -> ClosestEvent:
        """`dir=f`: the first event at or after `ts`; `dir=b`: the last at or before it."""
        await self._reader.check_access(room_id, user_id)
        for batch in range(MAX_BATCHES):
            rows = await self._store.get_events_near_timestamp(
                room_id, ts, direction, BATCH, after=batch * BATCH
            )
            verdicts = await self._reader.visibility.check_events(user_id, rows)
            for row in rows:
                if verdicts[row.event.event_id].visible:
                    return ClosestEvent(row.event.event_id, row.event.origin_server_ts)
            if len(rows) < BATCH:
                break
        raise MatrixError(404, "M_NOT_FOUND", f"No event found from {ts} in direction {direction}")
