"""Receipts and read markers (C-S "Receipts", "Read and unread markers").

A receipt is stored per (room, type, user, thread) with a position in the receipts stream, and
moves the user's read position for unread counts (C-S "Receiving notifications": the receipt
more ahead wins). `m.fully_read` is the room account data event of the same name.

Receipts cross servers as `m.receipt` EDUs (S2S "Receipts"): listeners hear of each public
receipt a local user posts (the federation sender forwards it), and `on_remote_receipt` stores
the receipts of other servers' users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final

from federation.edus import Receipt
from homeserver.errors import MatrixError
from homeserver.services.account_data import FULLY_READ, AccountDataService
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.events import EventsStore
from homeserver.storage.sync_data import ReceiptRow, SyncDataStore

logger = logging.getLogger(__name__)

READ: Final = "m.read"
READ_PRIVATE: Final = "m.read.private"
RECEIPT_TYPES: Final = frozenset({READ, READ_PRIVATE, FULLY_READ})
MAIN_THREAD: Final = "main"
UNTHREADED: Final = ""


# Told of every `m.read` receipt a local user posts, once it is stored.
ReceiptListener = Callable[[ReceiptRow], Awaitable[None]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def parse_thread_id(body: Mapping[str, Any], receipt_type: str) -> str:
    """The request's `thread_id` ('' when unthreaded), or 400 M_INVALID_PARAM.

    An explicit JSON null counts as absent: matrix-nio sends `"thread_id": null` for an
    unthreaded receipt.
    """
    if body.get("thread_id") is None:
        return UNTHREADED
    thread_id = body["thread_id"]
    if not isinstance(thread_id, str) or not thread_id:
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
    if receipt_type == FULLY_READ:
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id is not allowed for m.fully_read")
    if thread_id != MAIN_THREAD and not thread_id.startswith("$"):
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id must be 'main' or an event ID")
    return thread_id


class ReceiptsService:
    def __init__(
        self,
        store: SyncDataStore,
        events: EventsStore,
        state: RoomStateCache,
        account_data: AccountDataService,
        stream: AuxStream,
        *,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._events = events
        self._state = state
        self._account_data = account_data
        self._stream = stream
        self._clock = clock
        self._listeners: list[ReceiptListener] = []

    def add_listener(self, listener: ReceiptListener) -> None:
        """Hear of local users' public receipts (m.read.private never leaves this server)."""
        self._listeners.append(listener)

    @property
    def stream(self) -> AuxStream:
        return self._stream

    async def _check_event(self, user_id: str, room_id: str, event_id: str) -> int:
        """The event's stream position, once the user is joined and the event is theirs to
        see in this room."""
        state = await self._state.get_current_state(room_id, [("m.room.member", user_id)])
        member = state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
        rows = await self._events.get_event_rows([event_id])
        row = rows.get(event_id)
        if row is None or row.event.room_id != room_id or not row.visible_to_clients:
            raise MatrixError(404, "M_NOT_FOUND", "Event not found in this room")
        return row.stream_ordering

    async def post_receipt(
        self, user_id: str, room_id: str, receipt_type: str, event_id: str, thread_id: str
    ) -> None:
        """`POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`."""
        if receipt_type not in RECEIPT_TYPES:
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown receipt type {receipt_type!r}")
        position = await self._check_event(user_id, room_id, event_id)
        if receipt_type == FULLY_READ:
            await self._account_data.put(user_id, room_id, FULLY_READ, {"event_id": event_id})
            return
        stored = await self.store_receipt(
            room_id, receipt_type, user_id, event_id, thread_id, self._clock(), position
        )
        if receipt_type == READ:
            for listener in self._listeners:
                try:
                    await listener(stored)
                except Exception:  # the receipt is stored; telling others is best effort
                    logger.exception("receipt listener failed for %s in %s", user_id, room_id)

    async def on_remote_receipt(self, receipt: Receipt) -> None:
        """An `m.read` receipt from another server's `m.receipt` EDU (S2S "Receipts"); the
        EDU dispatcher has checked that its user belongs to the origin and is joined.

        `event_ids` are the extremities read up to: the newest one known here is kept (or the
        first listed while none is known yet)."""
        rows = await self._events.get_event_rows(receipt.event_ids)
        known = [
            (row.stream_ordering, event_id)
            for event_id, row in rows.items()
            if row.event.room_id == receipt.room_id
        ]
        if len(known) < len(rows):
            logger.info("ignoring a receipt of %s naming events of another room", receipt.user_id)
            return
        position, event_id = max(known) if known else (None, receipt.event_ids[0])
        await self.store_receipt(
            receipt.room_id,
            receipt.receipt_type,
            receipt.user_id,
            event_id,
            receipt.thread_id or UNTHREADED,
            receipt.ts,
            position,
        )

    async def store_receipt(
        self,
        room_id: str,
        receipt_type: str,
        user_id: str,
        event_id: str,
        thread_id: str,
        ts: int,
        event_position: int | None,
    ) -> ReceiptRow:
        """Store an already checked receipt (local, or from a remote server's `m.receipt`
        EDU) and wake the readers who may see it; the read position for unread counts moves."""
        # m.read.private MUST NOT reach anyone but its sender: only their /sync wakes.
        private = receipt_type == READ_PRIVATE
        async with self._stream.write(
            None if private else room_id, (user_id,) if private else ()
        ) as stream_id:
            receipt = ReceiptRow(room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id)
            await self._store.upsert_receipt(receipt, event_position)
            if event_position is not None:
                await self._store.advance_read_position(user_id, room_id, thread_id, event_position)
        return receipt

    async def set_read_markers(self, user_id: str, room_id: str, body: Mapping[str, Any]) -> None:
        """`POST /rooms/{roomId}/read_markers`: the same as the receipts it names."""
        for receipt_type in (FULLY_READ, READ, READ_PRIVATE):
            event_id = body.get(receipt_type)
            if event_id is None:
                continue
            if not isinstance(event_id, str) or not event_id.startswith("$"):
                raise MatrixError(400, "M_INVALID_PARAM", f"{receipt_type} must be an event ID")
            await self.post_receipt(user_id, room_id, receipt_type, event_id, UNTHREADED)

    async def receipt_events(
        self, user_id: str, room_ids: Collection[str], since: int, until: int
    ) -> dict[str, dict[str, Any]]:
        """`room_id → m.receipt` event with the receipts changed in `(since, until]` (all of
        them from 0); others' private receipts are left out."""
        rows = await self._store.get_receipts(room_ids, since, until)
        contents: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.receipt_type == READ_PRIVATE and row.user_id != user_id:
                continue
            receipt: dict[str, Any] = {"ts": row.ts}
            if row.thread_id:
                receipt["thread_id"] = row.thread_id
            by_event = contents.setdefault(row.room_id, {}).setdefault(row.event_id, {})
            by_event.setdefault(row.receipt_type, {})[row.user_id] = receipt
        return {
            room_id: {"type": "m.receipt", "content": content}
            for room_id, content in contents.items()
        }
