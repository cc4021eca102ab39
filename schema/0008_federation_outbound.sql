-- 0008: the outbound side of federation (S2S "Transactions"; GUIDE.md "Outbound federation: a
-- persisted queue per destination, exponential backoff with a cap, and catch-up after an
-- outage"). Written and read by homeserver/storage/federation_outbound.py for
-- homeserver/services/federation_sender.py and federation_queue.py.

-- Every remote server we have tried to send to, and whether we are backing off from it.
CREATE TABLE federation_destinations (
    -- The destination's server name, exactly as it appears in user IDs.
    destination                      TEXT PRIMARY KEY,
    -- When the last attempt failed, milliseconds since the Unix epoch; NULL when the last
    -- attempt succeeded (or none was made).
    retry_last_ts                    BIGINT,
    -- How long to wait after retry_last_ts before the next attempt, in milliseconds; 0 when
    -- not backing off. Grows exponentially with each failure, up to a cap.
    retry_interval_ms                BIGINT NOT NULL DEFAULT 0,
    -- Failed attempts since the last success.
    failure_count                    INTEGER NOT NULL DEFAULT 0,
    -- The highest event stream position the destination acknowledged (with a 200 to /send);
    -- NULL before the first success.
    last_successful_stream_ordering  BIGINT,
    -- When the destination last acknowledged a transaction, milliseconds since the Unix epoch.
    last_success_ts                  BIGINT
);
-- Destinations in backoff, loaded at start-up (an inbound request from one of them resets it).
CREATE INDEX federation_destinations_backoff ON federation_destinations (destination)
    WHERE retry_interval_ms > 0;

-- PDUs waiting to be sent: one row per (destination, local event). Rows are deleted when the
-- destination acknowledges the transaction that carried them, so after an outage the
-- destination receives everything it missed, oldest first (catch-up). A destination that stays
-- down has its backlog trimmed to the newest events (and each room's newest event): the peer
-- fills the gaps with /get_missing_events and /backfill.
CREATE TABLE federation_outbox (
    -- The server to send to.
    destination      TEXT NOT NULL,
    -- The event's position in the global event stream (events.stream_ordering): the send order.
    stream_ordering  BIGINT NOT NULL,
    -- The event to send (its PDU is read from events.json when the transaction is built).
    event_id         TEXT NOT NULL,
    -- The event's room, so trimming can keep each room's newest event.
    room_id          TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);
-- Trimming a backlog: each room's newest event for a destination.
CREATE INDEX federation_outbox_room ON federation_outbox (destination, room_id, stream_ordering);

-- Durable EDUs waiting to be sent (to-device messages, device list and signing key updates,
-- receipts). Typing and presence are kept in memory only: stale ones are worth nothing.
CREATE TABLE federation_edu_outbox (
    -- Send order within a destination.
    edu_id      BIGSERIAL PRIMARY KEY,
    -- The server to send to.
    destination TEXT NOT NULL,
    -- The EDU's edu_type, e.g. "m.direct_to_device".
    edu_type    TEXT NOT NULL,
    -- The EDU's content, JSON text.
    content     TEXT NOT NULL,
    -- When it was queued, milliseconds since the Unix epoch.
    created_ts  BIGINT NOT NULL
);
CREATE INDEX federation_edu_outbox_destination ON federation_edu_outbox (destination, edu_id);

-- How far the sender has read the event stream: every local event at or below this position
-- has its rows in federation_outbox. Moves in the same transaction as those rows, so a crash
-- between an event's commit and its queuing loses nothing. One row.
CREATE TABLE federation_stream_position (
    -- Always 'X': the table holds a single row.
    lock             CHAR(1) PRIMARY KEY DEFAULT 'X' CHECK (lock = 'X'),
    -- The last stream position read.
    stream_ordering  BIGINT NOT NULL
);
-- Events that exist before this migration are history, not news for anyone.
INSERT INTO federation_stream_position (lock, stream_ordering)
    SELECT 'X', COALESCE(MAX(stream_ordering), 0) FROM events;
