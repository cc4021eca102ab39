-- 0006: per-user data around /sync: filters, account data (global and per room, read markers
-- and tags included), receipts, push rules, push actions (unread counts, /notifications), and
-- placeholders for the to-device inbox and the device list stream (E2EE, later).
-- SQL lives in homeserver/storage/sync_data.py and homeserver/storage/push_data.py.
--
-- Each stream below has its own sequence: a /sync token carries one position per stream
-- (homeserver/services/tokens.py), so a token stays valid across restarts.

CREATE SEQUENCE account_data_stream_seq;
CREATE SEQUENCE receipts_stream_seq;
CREATE SEQUENCE to_device_stream_seq;
CREATE SEQUENCE device_lists_stream_seq;

-- Filters uploaded with POST /user/{userId}/filter (C-S "Filtering").
CREATE TABLE user_filters (
    -- The filter ID handed to the client (decimal text of this number: never starts with "{").
    filter_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The local user who uploaded it; only they may read or use it.
    user_id      TEXT NOT NULL,
    -- The filter as validated (unknown keys dropped), JSON text.
    filter_json  TEXT NOT NULL
);
CREATE INDEX user_filters_user ON user_filters (user_id);

-- Account data (C-S "Client Config"): global (room_id = '') or per room. Read markers
-- (m.fully_read) and tags (m.tag) are room account data too.
CREATE TABLE account_data (
    -- The local user it belongs to.
    user_id    TEXT NOT NULL,
    -- The room it is scoped to; '' for global account data.
    room_id    TEXT NOT NULL,
    -- The event type, e.g. "m.direct", "m.tag", "m.fully_read".
    type       TEXT NOT NULL,
    -- The event content, JSON text. '{}' after a deletion (clients see the empty content).
    content    TEXT NOT NULL,
    -- Position in account_data_stream_seq of the last change: /sync sends changes after `since`.
    stream_id  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

-- Receipts (C-S "Receipts"): one event per (room, type, user, thread).
CREATE TABLE receipts (
    -- The room.
    room_id                TEXT NOT NULL,
    -- "m.read" or "m.read.private" (the latter only ever shown to its owner).
    receipt_type           TEXT NOT NULL,
    -- Who sent the receipt (local or remote).
    user_id                TEXT NOT NULL,
    -- The thread: '' for an unthreaded receipt, "main" or a thread root's event ID otherwise.
    thread_id              TEXT NOT NULL,
    -- The event read up to.
    event_id               TEXT NOT NULL,
    -- That event's stream position (NULL if not stored here): "more ahead" comparisons.
    event_stream_ordering  BIGINT,
    -- The receipt's `ts`, milliseconds since the Unix epoch.
    ts                     BIGINT NOT NULL,
    -- Position in receipts_stream_seq of the last change: /sync sends changes after `since`.
    stream_id              BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);

-- Where a local user has read up to in a room, per thread, for unread counts (C-S "Receiving
-- notifications"): the furthest of their m.read / m.read.private receipts and their own events.
CREATE TABLE notification_read_positions (
    -- The local user.
    user_id          TEXT NOT NULL,
    -- The room.
    room_id          TEXT NOT NULL,
    -- '' for unthreaded (the whole room), "main" or a thread root's event ID.
    thread_id        TEXT NOT NULL,
    -- Stream position of the event read up to (inclusive).
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- A user's own push rules (C-S "Push Rules: API"); server-default rules are not stored.
CREATE TABLE push_rules (
    -- The local user.
    user_id    TEXT NOT NULL,
    -- override, content, room, sender or underride.
    kind       TEXT NOT NULL,
    -- The rule ID (unique per kind).
    rule_id    TEXT NOT NULL,
    -- Position among the user's rules of this kind: lower is more important.
    priority   INTEGER NOT NULL,
    -- The rule as served (push_rule.yaml), JSON text; `enabled` lives in push_rule_changes.
    rule_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- Changes to the enabled flag or actions of any rule, server-default rules included.
CREATE TABLE push_rule_changes (
    -- The local user.
    user_id  TEXT NOT NULL,
    -- The rule's kind.
    kind     TEXT NOT NULL,
    -- The rule ID.
    rule_id  TEXT NOT NULL,
    -- NULL: unchanged; otherwise the rule's enabled flag.
    enabled  BOOLEAN,
    -- NULL: unchanged; otherwise the rule's actions (JSON text of a list).
    actions  TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- Push rule evaluation results: one row per (local user, event) that the user's rules said
-- to notify about (C-S "Receiving notifications"; /notifications).
CREATE TABLE event_push_actions (
    -- The local user notified.
    user_id          TEXT NOT NULL,
    -- The event.
    event_id         TEXT NOT NULL,
    -- Its room.
    room_id          TEXT NOT NULL,
    -- Its stream position: counted when above the user's read position.
    stream_ordering  BIGINT NOT NULL,
    -- "main", or the thread root's event ID when the event is in a thread.
    thread_id        TEXT NOT NULL,
    -- The actions of the matching rule (JSON text of a list).
    actions          TEXT NOT NULL,
    -- The highlight tweak was set.
    highlight        BOOLEAN NOT NULL,
    -- When it was evaluated, milliseconds since the Unix epoch.
    ts               BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_ordering);

-- Send-to-device messages waiting for a device (C-S "Send-to-Device messaging"). Placeholder:
-- /sync reads it (to_device.events), the E2EE work fills it.
CREATE TABLE device_inbox (
    -- Recipient user and device.
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    -- Position in to_device_stream_seq; deleted once a later /sync acknowledges it.
    stream_id  BIGINT NOT NULL,
    -- The message as delivered: {"sender", "type", "content"}, JSON text.
    message    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);

-- Device list changes of users (C-S "Tracking the device list for a user"). Placeholder: /sync
-- reads it (device_lists.changed), the E2EE work fills it.
CREATE TABLE device_lists_stream (
    -- Position in device_lists_stream_seq.
    stream_id  BIGINT NOT NULL,
    -- The user whose devices or keys changed.
    user_id    TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX device_lists_stream_user ON device_lists_stream (user_id, stream_id);
