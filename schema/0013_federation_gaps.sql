-- 0013: durable in-flight transactions (S2S "Transactions") and a cache of other servers'
-- users' devices and end-to-end keys (S2S "Device Management", "End-to-End Encryption").

-- The transaction each destination queue has on the wire (or is retrying). S2S
-- "Transactions": a failed transaction is retried with the same txnId; keeping the exact body
-- here means a restart retries the same txnId with the same PDUs and EDUs, never a rebuilt
-- transaction under a new ID. Written by homeserver/storage/federation_outbound.py before the
-- first attempt, deleted in the same database transaction as the outbox rows it carried.
CREATE TABLE federation_inflight_transactions (
    -- The server the transaction is for; one transaction in flight per destination.
    destination       TEXT PRIMARY KEY,
    -- The txnId of `PUT /_matrix/federation/v1/send/{txnId}`.
    txn_id            TEXT NOT NULL,
    -- The transaction body exactly as sent (JSON text): origin, origin_server_ts, pdus, edus.
    body              TEXT NOT NULL,
    -- federation_outbox.stream_ordering of the PDUs it carries (deleted on acknowledgement).
    stream_orderings  BIGINT[] NOT NULL,
    -- federation_edu_outbox.edu_id of the durable EDUs it carries.
    edu_ids           BIGINT[] NOT NULL,
    -- When it was built, milliseconds since the Unix epoch.
    created_ts        BIGINT NOT NULL
);

-- Remote users whose device list this server caches (homeserver/storage/remote_device_keys.py).
-- Filled from /user/devices and /user/keys/query answers, kept current by
-- m.device_list_update EDUs; a list is served from the cache only while a local user shares a
-- room with its owner and no update was missed.
CREATE TABLE remote_device_lists (
    -- The remote user.
    user_id       TEXT PRIMARY KEY,
    -- The newest stream_id of theirs applied (from /user/devices or an EDU); NULL when the
    -- list came from /user/keys/query, which carries none.
    stream_id     BIGINT,
    -- An update referred to a prev_id we never saw: refetch with /user/devices before use.
    resync_needed BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the cache entry last changed, milliseconds since the Unix epoch.
    updated_ts    BIGINT NOT NULL
);

-- The m.device_list_update stream_ids applied since the last full fetch: an EDU whose
-- prev_id lists one not here (and not the fetched stream_id) means we missed an update.
CREATE TABLE remote_device_list_stream_ids (
    -- The remote user.
    user_id    TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    -- A stream_id of theirs we have applied.
    stream_id  BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_id)
);

-- One row per device of a cached remote user.
CREATE TABLE remote_device_keys (
    -- The remote user.
    user_id       TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    -- The device.
    device_id     TEXT NOT NULL,
    -- Its signed DeviceKeys object (JSON text); NULL for a device that uploaded none.
    keys          TEXT,
    -- Its public display name (S2S /user/devices `device_display_name`), if any.
    display_name  TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- A cached remote user's cross-signing keys (never the user-signing key: servers do not share
-- it). From /user/devices, /user/keys/query and m.signing_key_update EDUs.
CREATE TABLE remote_cross_signing_keys (
    -- The remote user.
    user_id   TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    -- "master" or "self_signing".
    key_type  TEXT NOT NULL CHECK (key_type IN ('master', 'self_signing')),
    -- The signed CrossSigningKey object (JSON text).
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
