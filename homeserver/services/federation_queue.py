"""One destination's outbound queue: builds transactions, sends them, backs off on failure.

S2S "Transactions": a transaction carries at most 50 PDUs and 100 EDUs, and "the sending
server must wait and retry for a 200 OK response before sending a transaction with a different
`txnId`" (`transactions.yaml`). So a queue has at most one transaction in flight; a failed one
is retried, unchanged and under the same txnId, until the destination accepts it. The
transaction is persisted before its first attempt (`federation_inflight_transactions`), so
this holds across restarts too.

GUIDE.md "Outbound federation": failures back off exponentially up to a cap (the spec leaves
the schedule to implementations). The retry state is persisted, so a restart does not hammer a
dead server; any authenticated request from the destination proves it is alive and resets the
backoff.

Each queue runs its own asyncio task, only while it has work, so a slow or dead destination
never delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from federation.edus import build_edu
from federation.wire import (
    MAX_EDUS_PER_TRANSACTION,
    MAX_PDUS_PER_TRANSACTION,
    WireFormatError,
    build_transaction,
    parse_transaction_response,
)
from homeserver.remote.client import format_path
from homeserver.remote.errors import DestinationNotAllowed, RemoteError, RemoteUnreachable
from homeserver.storage.federation_outbound import (
    NO_BACKOFF,
    FederationOutboundStore,
    InflightTransaction,
    RetryState,
)

logger = logging.getLogger(__name__)

SEND_PATH: Final = "/_matrix/federation/v1/send/{}"
# Ephemeral EDUs (typing, presence) held in memory per destination; older ones are dropped.
MAX_EPHEMERAL_EDUS: Final = 50
# At shutdown, how long a transaction already sent may take to be acknowledged.
CLOSE_GRACE_S: Final = 2.0
# An error we cannot classify (a bug, the database away): wait this long, then try again.
_UNEXPECTED_ERROR_PAUSE_S: Final = 1.0


def now_ms() -> int:
    return int(time.time() * 1000)


class TransactionClient(Protocol):
    """What the queue needs of `homeserver.remote.client.FederationClient`."""

    async def put_json(self, destination: str, path: str, content: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with a cap and jitter: 5 s, 10 s, 20 s … up to an hour."""

    initial_ms: int = 5_000
    multiplier: float = 2.0
    max_ms: int = 60 * 60 * 1000
    # Each interval is spread by up to ±jitter so that many queues do not retry in step.
    jitter: float = 0.2

    def after_failure(
        self, previous: RetryState, now: int, rand: Callable[[], float] = random.random
    ) -> RetryState:
        if previous.retry_interval_ms <= 0:
            base = float(self.initial_ms)
        else:
            base = previous.retry_interval_ms * self.multiplier
        spread = 1.0 + self.jitter * (2.0 * rand() - 1.0)
        interval = max(1, int(min(self.max_ms, base * spread)))
        return RetryState(
            retry_last_ts=now, retry_interval_ms=interval, failure_count=previous.failure_count + 1
        )


@dataclass(frozen=True, slots=True)
class QueueLimits:
    # A destination that stays down keeps at most this many queued PDUs (plus each room's
    # newest) and EDUs; the peer fetches older events itself (/get_missing_events, /backfill).
    max_backlog_pdus: int = 10_000
    max_backlog_edus: int = 10_000


def is_retryable(error: RemoteError) -> bool:
    """Whether a transaction the destination refused may succeed later unchanged.

    Server errors, rate limiting and timeouts pass; so does 401, which usually means the
    destination could not fetch our keys yet. Any other 4xx refuses this transaction for good.
    """
    return error.status >= 500 or error.status in (401, 408, 429)


class DestinationQueue:
    def __init__(
        self,
        destination: str,
        *,
        store: FederationOutboundStore,
        client: TransactionClient,
        server_name: str,
        next_txn_id: Callable[[], str],
        retry: RetryState | None = None,
        backoff: Backoff | None = None,
        limits: QueueLimits | None = None,
        clock_ms: Callable[[], int] = now_ms,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.destination = destination
        self._store = store
        self._client = client
        self._server_name = server_name
        self._next_txn_id = next_txn_id
        # None until read from the database (the worker does it before its first attempt).
        self._retry = retry
        self._backoff = backoff or Backoff()
        self._limits = limits or QueueLimits()
        self._clock_ms = clock_ms
        self._rand = rand
        self._ephemeral: list[dict[str, Any]] = []
        self._pending: InflightTransaction | None = None
        self._has_work = False
        self._reset_requested = False
        self._retry_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- called by the sender -------------------------------------------------------------

    @property
    def backing_off(self) -> bool:
        return self._retry is not None and self._retry.backing_off

    def wake(self) -> None:
        """There may be new work in the database (or in memory): make sure the worker runs."""
        if self._closed:
            return
        self._has_work = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._run(), name=f"federation-send:{self.destination}"
            )

    def resume(self, transaction: InflightTransaction) -> None:
        """A transaction an earlier run sent without an answer: it goes first, unchanged."""
        if self._pending is None:
            self._pending = transaction
        self.wake()

    def add_ephemeral_edu(self, edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU that is worthless once stale: never persisted, and dropped while the
        destination is backing off."""
        if self.backing_off:
            return
        self._ephemeral.append(build_edu(edu_type, content))
        del self._ephemeral[:-MAX_EPHEMERAL_EDUS]
        self.wake()

    def reset_backoff(self) -> None:
        """The destination is alive (it sent us an authenticated request): retry now."""
        if not self.backing_off:
            return
        self._retry = NO_BACKOFF
        self._reset_requested = True
        self._retry_now.set()
        self.wake()

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Stop the worker. A transaction already on the wire gets `grace_s` to be acknowledged
        and forgotten, so that a clean shutdown does not send it again after the restart."""
        self._closed = True
        self._retry_now.set()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the worker -----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            try:
                if not await self._step():
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("federation queue for %s failed; retrying", self.destination)
                await asyncio.sleep(_UNEXPECTED_ERROR_PAUSE_S)

    async def _step(self) -> bool:
        """One attempt; False when there is nothing left to send."""
        await self._wait_until_due()
        if self._closed:
            return False
        self._has_work = False
        transaction = self._pending or await self._next_transaction()
        if transaction is None:
            # wake() may have been called while the queue was read: look again.
            return self._has_work
        self._pending = transaction
        await self._attempt(transaction)
        return True

    async def _wait_until_due(self) -> None:
        if self._retry is None:
            self._retry = await self._store.get_retry_state(self.destination)
        if self._reset_requested:
            self._reset_requested = False
            await self._store.set_retry_state(self.destination, NO_BACKOFF)
        while self.backing_off and not self._closed:
            assert self._retry is not None
            delay_ms = self._retry.retry_due_ts - self._clock_ms()
            if delay_ms <= 0:
                return
            self._retry_now.clear()
            try:
                await asyncio.wait_for(self._retry_now.wait(), delay_ms / 1000)
            except TimeoutError:
                return
            if self._reset_requested:  # reset_backoff() woke us
                self._reset_requested = False
                await self._store.set_retry_state(self.destination, NO_BACKOFF)

    async def _next_transaction(self) -> InflightTransaction | None:
        """The oldest queued PDUs and EDUs, up to the spec's limits per transaction, saved as
        this destination's transaction in flight before anything is sent."""
        if self.backing_off:
            # Catching up after an outage: bound what is left first (QueueLimits).
            await self._trim_backlog()
        pdus = await self._store.get_pending_pdus(self.destination, MAX_PDUS_PER_TRANSACTION)
        ephemeral = self._ephemeral[:MAX_EDUS_PER_TRANSACTION]
        del self._ephemeral[: len(ephemeral)]
        durable = await self._store.get_pending_edus(
            self.destination, MAX_EDUS_PER_TRANSACTION - len(ephemeral)
        )
        if not pdus and not ephemeral and not durable:
            return None
        edus = ephemeral + [build_edu(edu.edu_type, edu.content) for edu in durable]
        body = build_transaction(
            self._server_name, self._clock_ms(), [pdu.pdu for pdu in pdus], edus
        )
        transaction = InflightTransaction(
            txn_id=self._next_txn_id(),
            body=body,
            stream_orderings=tuple(pdu.stream_ordering for pdu in pdus),
            edu_ids=tuple(edu.edu_id for edu in durable),
        )
        await self._store.save_inflight(self.destination, transaction, self._clock_ms())
        return transaction

    async def _attempt(self, transaction: InflightTransaction) -> None:
        """`PUT /_matrix/federation/v1/send/{txnId}` and act on the outcome."""
        path = format_path(SEND_PATH, transaction.txn_id)
        try:
            response = await self._client.put_json(self.destination, path, transaction.body)
        except DestinationNotAllowed as exc:
            # Our configuration forbids this server (it changed since the rows were queued).
            logger.info("dropping the federation queue for %s: %s", self.destination, exc.reason)
            self._pending = None
            self._ephemeral.clear()
            await self._store.drop_queue(self.destination)
            return
        except RemoteUnreachable as exc:
            await self._failed(transaction, exc.reason)
            return
        except RemoteError as exc:
            if is_retryable(exc):
                await self._failed(transaction, str(exc))
                return
            # The destination is up but refuses this transaction; resending cannot help.
            logger.warning(
                "%s refused transaction %s for good: %s", self.destination, transaction.txn_id, exc
            )
            await self._succeeded(transaction)
            return
        _log_pdu_errors(self.destination, transaction.txn_id, response)
        await self._succeeded(transaction)

    async def _succeeded(self, transaction: InflightTransaction) -> None:
        await self._store.mark_sent(
            self.destination,
            transaction.stream_orderings,
            transaction.edu_ids,
            self._clock_ms(),
        )
        self._pending = None
        self._retry = NO_BACKOFF

    async def _failed(self, transaction: InflightTransaction, reason: str) -> None:
        previous = self._retry or NO_BACKOFF
        self._retry = self._backoff.after_failure(previous, self._clock_ms(), self._rand)
        # Typing and presence not yet in a transaction are stale by the time we retry.
        self._ephemeral.clear()
        logger.info(
            "transaction %s to %s failed (%s); retrying in %d ms",
            transaction.txn_id,
            self.destination,
            reason,
            self._retry.retry_interval_ms,
        )
        await self._store.set_retry_state(self.destination, self._retry)
        await self._trim_backlog()

    async def _trim_backlog(self) -> None:
        trimmed = await self._store.trim_backlog(
            self.destination, self._limits.max_backlog_pdus, self._limits.max_backlog_edus
        )
        if trimmed:
            logger.info("dropped %d queued items for %s (backlog limit)", trimmed, self.destination)


def _log_pdu_errors(destination: str, txn_id: str, response: Any) -> None:
    """The 200 body lists a result per PDU; one the destination rejected is not resent."""
    try:
        results = parse_transaction_response(response)
    except WireFormatError as exc:
        logger.info(
            "%s answered transaction %s with a malformed body: %s", destination, txn_id, exc
        )
        return
    for event_id, error in results.items():
        if error is not None:
            logger.info(
                "%s rejected %s in transaction %s: %s", destination, event_id, txn_id, error
            )
