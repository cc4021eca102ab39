-- 0002: rooms, events, the room DAG, room state (deltas against snapshots), memberships,
-- client transaction IDs, redactions and relations. Written by the one event pipeline
-- (homeserver/services/event_pipeline.py); SQL in homeserver/storage/{rooms,events,state}.py.

-- Rooms this server knows about (created here or joined over federation).
CREATE TABLE rooms (
    -- "!opaque:server" (v1–v11) or "!" + create event reference hash (v12).
    room_id       TEXT PRIMARY KEY,
    -- Room version identifier from the create event ("1" … "12"); fixes the event format,
    -- auth rules, redaction algorithm and state resolution used for every event of the room.
    room_version  TEXT NOT NULL,
    -- When this server first stored the room, milliseconds since the Unix epoch.
    created_ts    BIGINT NOT NULL,
    -- Listed in this server's public room directory (C-S "Listing rooms").
    is_public     BOOLEAN NOT NULL DEFAULT FALSE
);

-- Global order of persisted events: drives /sync tokens; never reused, gaps allowed
-- (a rolled-back transaction skips its numbers).
CREATE SEQUENCE events_stream_seq;

-- Every event (PDU) this server stores, local or remote, accepted or rejected.
CREATE TABLE events (
    -- Event ID: "$opaque:server" (v1–v2) or "$" + reference hash (v3+).
    event_id          TEXT PRIMARY KEY,
    -- Room the event belongs to (for a v12 create event, the room it creates).
    room_id           TEXT NOT NULL REFERENCES rooms (room_id),
    -- Position in the global event stream (events_stream_seq), assigned when persisted.
    stream_ordering   BIGINT NOT NULL UNIQUE,
    -- The PDU's depth: topological position in the room DAG (S2S "PDUs").
    depth             BIGINT NOT NULL,
    -- Event type, e.g. "m.room.message".
    type              TEXT NOT NULL,
    -- State key for state events; NULL for message events.
    state_key         TEXT,
    -- Full user ID of the sender.
    sender            TEXT NOT NULL,
    -- The origin's timestamp, milliseconds since the Unix epoch (as claimed, not trusted).
    origin_server_ts  BIGINT NOT NULL,
    -- The PDU exactly as built here or as received (after a content-hash mismatch, the
    -- redacted copy), canonical JSON. Never rewritten except by censoring after redaction.
    json              TEXT NOT NULL,
    -- Stored only for its auth/state role (S2S "auth chain", send_join state), not part of the
    -- room timeline: no state group, not a forward extremity, not shown to clients.
    outlier           BOOLEAN NOT NULL DEFAULT FALSE,
    -- Passed auth against its auth events and the state before it, but not against the current
    -- state (S2S "Soft failure"): kept in the DAG, never shown to clients, not an extremity.
    soft_failed       BOOLEAN NOT NULL DEFAULT FALSE,
    -- Why the event was rejected by the auth rules; NULL when accepted. Rejected events are
    -- kept (so they are not fetched again) but never affect state and are never served.
    rejection_reason  TEXT,
    -- Event ID of the m.room.redaction that redacts this event, when it applies (C-S
    -- "Redactions"); clients and peers then get the redacted form.
    redacted_because  TEXT,
    -- Device that sent it (local events only), for the `unsigned.transaction_id` echo.
    txn_device_id     TEXT,
    -- The client's transaction ID (local events only), echoed back to that device in /sync.
    txn_id            TEXT
);
-- /sync and room timelines in stream order.
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
-- /messages, /context and backfill in topological order.
CREATE INDEX events_room_depth ON events (room_id, depth, stream_ordering);

-- DAG edges: the event's prev_events.
CREATE TABLE event_edges (
    -- The event whose prev_events these are.
    event_id       TEXT NOT NULL,
    -- One of its prev_events (may not be stored here yet: a gap in the DAG).
    prev_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
-- "Which events point at this one" (forward extremity updates, get_missing_events).
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- Auth DAG edges: the event's auth_events.
CREATE TABLE event_auth_edges (
    -- The event whose auth_events these are.
    event_id       TEXT NOT NULL,
    -- One of its auth_events.
    auth_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

-- Forward extremities: the room's events with no known successor, the prev_events of the
-- next local event (S2S "PDUs", "prev_events").
CREATE TABLE room_forward_extremities (
    -- The room.
    room_id   TEXT NOT NULL,
    -- An event of the room with no stored child.
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Room state is stored as deltas against snapshots, never a full copy per event.
CREATE TABLE state_groups (
    -- Identifier of this state (a set of (type, state_key) → event_id).
    state_group       BIGSERIAL PRIMARY KEY,
    -- Room the state belongs to.
    room_id           TEXT NOT NULL,
    -- NULL: this group is a full snapshot. Otherwise this group's entries are a delta on top
    -- of the state of prev_state_group.
    prev_state_group  BIGINT REFERENCES state_groups (state_group),
    -- Length of the delta chain down to a snapshot (0 for a snapshot); a new snapshot is
    -- taken when it would exceed the limit, so reads stay bounded.
    delta_count       INTEGER NOT NULL
);

-- The entries of a state group: all of them (snapshot) or the changes (delta).
CREATE TABLE state_group_entries (
    -- The state group.
    state_group  BIGINT NOT NULL REFERENCES state_groups (state_group),
    -- State event type.
    type         TEXT NOT NULL,
    -- State key.
    state_key    TEXT NOT NULL,
    -- The state event; NULL in a delta means "this key is not in the state any more".
    event_id     TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- The room state around each (non-outlier) event.
CREATE TABLE event_state_groups (
    -- The event.
    event_id            TEXT PRIMARY KEY,
    -- State AFTER the event (equal to state_group_before unless it is an accepted state event).
    state_group         BIGINT NOT NULL REFERENCES state_groups (state_group),
    -- State BEFORE the event (what /state_ids?event_id= serves and auth used).
    state_group_before  BIGINT NOT NULL REFERENCES state_groups (state_group)
);

-- The room's current state: the resolved state of its forward extremities.
CREATE TABLE current_state_events (
    -- The room.
    room_id     TEXT NOT NULL,
    -- State event type.
    type        TEXT NOT NULL,
    -- State key.
    state_key   TEXT NOT NULL,
    -- The event holding this (type, state_key) now.
    event_id    TEXT NOT NULL,
    -- content.membership for m.room.member events; NULL otherwise.
    membership  TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
-- "Rooms a user is in / invited to" from current state (local and remote users).
CREATE INDEX current_state_members ON current_state_events (state_key, membership)
    WHERE type = 'm.room.member';

-- Every m.room.member event ever stored (history: /members?at=, sync of left rooms).
CREATE TABLE room_memberships (
    -- The m.room.member event.
    event_id         TEXT PRIMARY KEY,
    -- The room.
    room_id          TEXT NOT NULL,
    -- The member (the event's state_key).
    user_id          TEXT NOT NULL,
    -- Who sent the event (differs from user_id for invites, kicks and bans).
    sender           TEXT NOT NULL,
    -- content.membership: invite, join, knock, leave or ban.
    membership       TEXT NOT NULL,
    -- The event's stream position.
    stream_ordering  BIGINT NOT NULL
);
-- "Rooms for user" history.
CREATE INDEX room_memberships_user ON room_memberships (user_id, stream_ordering);
-- "Members of room" history.
CREATE INDEX room_memberships_room ON room_memberships (room_id, user_id);

-- Current membership of LOCAL users only: drives /sync's joined/invited/left rooms.
CREATE TABLE local_current_membership (
    -- The room.
    room_id          TEXT NOT NULL,
    -- A user of this server.
    user_id          TEXT NOT NULL,
    -- Their current membership.
    membership       TEXT NOT NULL,
    -- The m.room.member event that set it.
    event_id         TEXT NOT NULL,
    -- Its stream position (when the user's membership last changed).
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX local_current_membership_user ON local_current_membership (user_id, membership);

-- Client transaction IDs, durable per device and endpoint (C-S "Transaction identifiers"):
-- a retransmission returns the original response, even after a restart.
CREATE TABLE client_transactions (
    -- The user who sent the request.
    user_id     TEXT NOT NULL,
    -- Their device (the scope of a transaction ID since spec v1.7).
    device_id   TEXT NOT NULL,
    -- The endpoint, with its path parameters (e.g. "send:!room:hs:m.room.message").
    kind        TEXT NOT NULL,
    -- The client's txnId.
    txn_id      TEXT NOT NULL,
    -- The original response body (JSON).
    response    TEXT NOT NULL,
    -- When it was first processed, milliseconds since the Unix epoch (kept ≥ 7 days).
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, kind, txn_id)
);
CREATE INDEX client_transactions_created ON client_transactions (created_ts);

-- m.room.redaction events and their targets (C-S "Redactions").
CREATE TABLE redactions (
    -- The m.room.redaction event.
    event_id       TEXT PRIMARY KEY,
    -- The event it redacts (may not be stored yet).
    redacts        TEXT NOT NULL,
    -- Whether the target's stored json has been replaced by its redacted form.
    have_censored  BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX redactions_redacts ON redactions (redacts);

-- content["m.relates_to"] of events (C-S "Forming relationships between events").
CREATE TABLE event_relations (
    -- The child event (the reply, edit, reaction, thread message …).
    event_id         TEXT PRIMARY KEY,
    -- The parent event it relates to.
    relates_to_id    TEXT NOT NULL,
    -- rel_type: m.annotation, m.replace, m.thread, m.reference, or a custom type.
    relation_type    TEXT NOT NULL,
    -- For m.annotation: the key (e.g. the reaction emoji); NULL otherwise.
    aggregation_key  TEXT
);
-- /relations/{eventId}[/{relType}], thread and annotation aggregation.
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, relation_type);
