"""Received federation transactions (schema/0007_federation_inbound.sql).

S2S "Transactions": the sender retries a transaction with the same txnId until it gets a 200, so
the receiver remembers each `(origin, txnId)` and its response: a retry is answered from here
and nothing is processed twice.
"""

from __future__ import annotations

import asyncpg


class ReceivedTransactionsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_response(self, origin: str, txn_id: str) -> str | None:
        """The response (JSON text) given to an earlier delivery of this transaction."""
        response: str | None = await self._pool.fetchval(
            "SELECT response FROM federation_received_transactions"
            " WHERE origin = $1 AND txn_id = $2",
            origin,
            txn_id,
        )
        return response

    async def store_response(self, origin: str, txn_id: str, response: str, now_ms: int) -> str:
        """Remember the response; returns the one stored first if another delivery of the same
        transaction finished before us."""
        stored: str | None = await self._pool.fetchval(
            "INSERT INTO federation_received_transactions (origin, txn_id, response, received_ts)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (origin, txn_id)"
            " DO UPDATE SET response = federation_received_transactions.response"
            " RETURNING response",
            origin,
            txn_id,
            response,
            now_ms,
        )
        return stored if stored is not None else response

    async def delete_before(self, before_ms: int) -> int:
        """Forget transactions received before `before_ms` (keep at least 7 days)."""
        result: str = await self._pool.execute(
            "DELETE FROM federation_received_transactions WHERE received_ts < $1", before_ms
        )
        return int(result.split()[-1])
