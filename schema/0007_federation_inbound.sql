-- 0007: the inbound side of federation (S2S "Transactions").
-- Written and read by homeserver/storage/federation_inbound.py for
-- homeserver/http/federation/transactions.py.

-- Transactions received on PUT /_matrix/federation/v1/send/{txnId}: a retry of the same
-- (origin, txnId) gets the original response and is not processed again, even after a restart
-- (CONTRACT "Durability and faults").
CREATE TABLE federation_received_transactions (
    -- The sending server, as authenticated by its X-Matrix signature.
    origin       TEXT NOT NULL,
    -- The sender's transaction ID (unique per origin only).
    txn_id       TEXT NOT NULL,
    -- The 200 body we answered with: {"pdus": {event_id: {} or {"error": …}}} (JSON text).
    response     TEXT NOT NULL,
    -- When we finished processing it, milliseconds since the Unix epoch; old rows may be
    -- pruned after 7 days.
    received_ts  BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
-- Pruning by age.
CREATE INDEX federation_received_transactions_ts ON federation_received_transactions (received_ts);
