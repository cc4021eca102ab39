"""Processing `PUT /_matrix/federation/v1/send/{txnId}` (S2S "Transactions").

A transaction is processed once: its response is stored under `(origin, txnId)` and a retry,
even after a restart, gets the same answer without anything being processed again; a retry
that arrives while the first delivery is still being processed waits for it. PDUs of different
rooms are processed concurrently, those of one room in order of depth and stored together
(homeserver/services/federation_inbound_batch.py); each gets its own result, and no PDU or EDU
can fail the transaction. What is fetched from other servers while
processing one transaction shares one time budget (`TRANSACTION_FETCH_BUDGET_S`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from federation.wire import Transaction, build_transaction_response
from homeserver.services.federation_edus import EduDispatcher
from homeserver.services.federation_fetch import fetch_budget
from homeserver.services.federation_inbound import PduReceiver, PduResult
from homeserver.services.federation_inbound_batch import receive_room_pdus
from homeserver.storage.federation_inbound import ReceivedTransactionsStore

logger = logging.getLogger(__name__)

# All remote fetches (missing events, state, auth chains) for one transaction, together.
TRANSACTION_FETCH_BUDGET_S: Final = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionProcessor:
    def __init__(
        self,
        *,
        receiver: PduReceiver,
        edus: EduDispatcher,
        store: ReceivedTransactionsStore,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._receiver = receiver
        self._edus = edus
        self._store = store
        self._clock = clock
        self._in_flight: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}

    async def on_transaction(
        self, origin: str, txn_id: str, transaction: Transaction
    ) -> dict[str, Any]:
        """The response body for this transaction, processing it only the first time."""
        stored = await self._store.get_response(origin, txn_id)
        if stored is not None:
            response: dict[str, Any] = orjson.loads(stored)
            return response
        key = (origin, txn_id)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._process(origin, txn_id, transaction))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # Shielded: a sender that hangs up does not abort processing half way.
        return await asyncio.shield(task)

    async def _process(self, origin: str, txn_id: str, transaction: Transaction) -> dict[str, Any]:
        with fetch_budget(TRANSACTION_FETCH_BUDGET_S):
            results = await self.process_pdus(origin, transaction.pdus)
        for edu in transaction.edus:
            try:
                await self._edus.on_edu(origin, edu)
            except Exception:
                logger.exception("EDU from %s failed", origin)
        response = build_transaction_response(
            {r.event_id: r.error for r in results if r.event_id is not None}
        )
        if any(r.retryable for r in results):
            return response
        stored = await self._store.store_response(
            origin, txn_id, orjson.dumps(response).decode(), self._clock()
        )
        result: dict[str, Any] = orjson.loads(stored)
        return result

    async def process_pdus(self, origin: str, pdus: Sequence[Mapping[str, Any]]) -> list[PduResult]:
        by_room: dict[object, list[Mapping[str, Any]]] = {}
        for pdu in pdus:
            by_room.setdefault(pdu.get("room_id"), []).append(pdu)
        per_room = await asyncio.gather(
            *(self._process_room(origin, room, room_pdus) for room, room_pdus in by_room.items())
        )
        return [result for results in per_room for result in results]

    async def _process_room(
        self, origin: str, room_id: object, pdus: Sequence[Mapping[str, Any]]
    ) -> list[PduResult]:
        ordered = sorted(pdus, key=_depth_of)
        if isinstance(room_id, str):
            try:
                return await receive_room_pdus(self._receiver, origin, room_id, ordered)
            except Exception:
                # A bug in the batch path: each PDU goes the way of a PDU received alone.
                logger.exception("batch of PDUs from %s failed before storing", origin)
        results: list[PduResult] = []
        for pdu in ordered:
            try:
                results.append(await self._receiver.receive_pdu(origin, pdu))
            except Exception:
                # A bug or a database failure for one PDU must not lose the others' results;
                # the PDU is reported as failed and the sender may retry it.
                logger.exception("processing a PDU from %s failed", origin)
                event_id = pdu.get("event_id")
                results.append(
                    PduResult(
                        event_id if isinstance(event_id, str) else None,
                        "internal error processing this event",
                        retryable=True,
                    )
                )
        return results


def _depth_of(pdu: Mapping[str, Any]) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else 0
