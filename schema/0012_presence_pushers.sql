-- 0012: presence of local users and pushers (C-S "Presence", "Push Notifications").
--
-- Presence lives in memory (homeserver/services/presence.py); this table keeps the last state
-- of each local user so a restart keeps their status message. Remote users' presence is not
-- stored: their servers send it again. Written by homeserver/storage/presence.py.
CREATE TABLE presence_state (
    -- A local user.
    user_id         TEXT PRIMARY KEY,
    -- online, unavailable or offline.
    presence        TEXT NOT NULL CHECK (presence IN ('online', 'unavailable', 'offline')),
    -- The status message set with PUT /presence/{userId}/status; NULL: none.
    status_msg      TEXT,
    -- Last pro-active event (C-S "Last active ago"), milliseconds since the Unix epoch; 0: never.
    last_active_ts  BIGINT NOT NULL,
    -- When this row was written, milliseconds since the Unix epoch.
    updated_ts      BIGINT NOT NULL
);

-- Pushers (pusher.yaml, POST /pushers/set). One per (app_id, pushkey, user_id); with
-- `append: false` a pushkey belongs to one user only. Tied to the device that set it: deleting
-- the device (logout, DELETE /devices) deletes its pushers. Written by
-- homeserver/storage/pushers.py.
CREATE TABLE pushers (
    -- The local user notifications are for.
    user_id              TEXT NOT NULL,
    -- Reverse-DNS identifier of the application (at most 64 characters).
    app_id               TEXT NOT NULL,
    -- Routing address at the gateway, e.g. an APNS token (at most 512 bytes).
    pushkey              TEXT NOT NULL,
    -- "http" or "email" (email pushers are stored and listed, not sent by this server).
    kind                 TEXT NOT NULL,
    -- When the pushkey was last set, milliseconds since the Unix epoch (sent as seconds).
    pushkey_ts           BIGINT NOT NULL,
    app_display_name     TEXT NOT NULL,
    device_display_name  TEXT NOT NULL,
    -- Which set of device specific rules this pusher executes; NULL: none given.
    profile_tag          TEXT,
    -- Preferred language, e.g. "en-US".
    lang                 TEXT NOT NULL,
    -- PusherData as given: `url` (http pushers), `format`, and any custom keys.
    data                 JSONB NOT NULL,
    -- The device whose access token set the pusher; NULL for a token without a device.
    device_id            TEXT,
    PRIMARY KEY (app_id, pushkey, user_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX pushers_user ON pushers (user_id);
