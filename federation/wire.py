"""Request and response bodies of the Server-Server API: transactions, and the shape checks
shared with the membership handshakes (federation/wire_membership.py).

Spec: S2S "Transactions" (`transactions.yaml`, `definitions/transaction.yaml`).

Parsers check the shape of a body and raise `WireFormatError` (a 400 on our side, a malformed
response on theirs); the events inside are left to `federation.pdu` and the receipt checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.ids import is_valid_server_name

# S2S "Transactions": "they can have at most 50 PDUs and 100 EDUs".
MAX_PDUS_PER_TRANSACTION: Final = 50
MAX_EDUS_PER_TRANSACTION: Final = 100


class WireFormatError(ValueError):
    """A federation request or response body has the wrong shape."""


# --- Transactions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transaction:
    """The body of `PUT /_matrix/federation/v1/send/{txnId}`; PDUs and EDUs still unchecked."""

    origin: str
    origin_server_ts: int
    pdus: tuple[Mapping[str, Any], ...]
    edus: tuple[Mapping[str, Any], ...]


def parse_transaction(body: Any, *, expected_origin: str | None = None) -> Transaction:
    """Check a transaction's shape and size limits.

    Only the envelope is checked here: each PDU must be an object and each EDU an object; what
    is inside is judged one by one so that one bad PDU or EDU never fails the transaction.
    `expected_origin`, if given, is the X-Matrix origin the body's `origin` must equal.
    """
    body = require_object(body, "transaction")
    origin = _require_server_name(body, "origin")
    if expected_origin is not None and origin != expected_origin:
        raise WireFormatError(
            f"transaction origin {origin!r} is not the sender {expected_origin!r}"
        )
    origin_server_ts = _require_int(body, "origin_server_ts")
    pdus = require_objects(body, "pdus", required=True)
    edus = require_objects(body, "edus", required=False)
    if len(pdus) > MAX_PDUS_PER_TRANSACTION:
        raise WireFormatError(f"{len(pdus)} PDUs, over the limit of {MAX_PDUS_PER_TRANSACTION}")
    if len(edus) > MAX_EDUS_PER_TRANSACTION:
        raise WireFormatError(f"{len(edus)} EDUs, over the limit of {MAX_EDUS_PER_TRANSACTION}")
    return Transaction(origin, origin_server_ts, pdus, edus)


def build_transaction(
    origin: str,
    origin_server_ts: int,
    pdus: Sequence[Mapping[str, Any]],
    edus: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The body of an outgoing transaction; the caller splits its queue to fit the limits."""
    if len(pdus) > MAX_PDUS_PER_TRANSACTION or len(edus) > MAX_EDUS_PER_TRANSACTION:
        raise WireFormatError(
            f"a transaction holds at most {MAX_PDUS_PER_TRANSACTION} PDUs and "
            f"{MAX_EDUS_PER_TRANSACTION} EDUs (got {len(pdus)} and {len(edus)})"
        )
    body: dict[str, Any] = {
        "origin": origin,
        "origin_server_ts": origin_server_ts,
        "pdus": [dict(pdu) for pdu in pdus],
    }
    if edus:  # "May be omitted if there are no ephemeral messages to be sent."
        body["edus"] = [dict(edu) for edu in edus]
    return body


def build_transaction_response(results: Mapping[str, str | None]) -> dict[str, Any]:
    """The 200 body of `/send`: per event ID `{}` or `{"error": "…"}`."""
    return {
        "pdus": {
            event_id: ({} if error is None else {"error": error})
            for event_id, error in results.items()
        }
    }


def parse_transaction_response(body: Any) -> dict[str, str | None]:
    """Per event ID the error the receiver reported, or None if the PDU was handled."""
    pdus = require_object(require_object(body, "transaction response").get("pdus"), "pdus")
    results: dict[str, str | None] = {}
    for event_id, result in pdus.items():
        error = result.get("error") if isinstance(result, Mapping) else None
        results[event_id] = error if isinstance(error, str) else None
    return results


# --- shape checks (also used by federation/wire_membership.py) ---------------------------------


def require_object(value: Any, what: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else WireFormatError naming `what`."""
    if not isinstance(value, Mapping):
        raise WireFormatError(f"{what} must be a JSON object")
    return value


def _require_int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireFormatError(f"{key} must be an integer")
    return value


def _require_server_name(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not is_valid_server_name(value):
        raise WireFormatError(f"{key} must be a server name")
    return value


def require_objects(
    body: Mapping[str, Any], key: str, *, required: bool
) -> tuple[Mapping[str, Any], ...]:
    """`body[key]` as a list of JSON objects; absent is `()` unless `required`."""
    value = body.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list):
        raise WireFormatError(f"{key} must be a list")
    if not all(isinstance(item, Mapping) for item in value):
        raise WireFormatError(f"every entry of {key} must be a JSON object")
    return tuple(value)
