"""S2S "Transactions": `PUT /_matrix/federation/v1/send/{txnId}`.

The body is checked as a whole first (shape, at most 50 PDUs and 100 EDUs: else 400
M_BAD_JSON); then each PDU and EDU is handled on its own by
homeserver/services/federation_transactions.py, and the answer is 200 with a result per PDU.
"""

from __future__ import annotations

from aiohttp import web

from federation.wire import WireFormatError, parse_transaction
from homeserver.errors import MatrixError
from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.http.json_io import json_response
from homeserver.services.federation_transactions import TransactionProcessor


def add_routes(
    router: web.UrlDispatcher, auth: FederationAuth, processor: TransactionProcessor
) -> None:
    @auth
    async def send_transaction(request: web.Request, fed: FederationRequest) -> web.Response:
        txn_id = request.match_info["txnId"]
        try:
            # The body's `origin` must be the server that signed the request.
            transaction = parse_transaction(fed.body(), expected_origin=fed.origin)
        except WireFormatError as exc:
            raise MatrixError(400, "M_BAD_JSON", str(exc)) from None
        return json_response(await processor.on_transaction(fed.origin, txn_id, transaction))

    router.add_put("/_matrix/federation/v1/send/{txnId}", send_transaction)
