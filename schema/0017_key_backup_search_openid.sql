-- 0017: server-side key backups (C-S "Server-side key backups"), full-text search of room
-- events (C-S "Server Side Search") and OpenID tokens (C-S "OpenID"). SQL lives in
-- homeserver/storage/key_backup.py, homeserver/storage/search.py and homeserver/services/openid.py.

-- One row per backup version a user created. Versions are numbered per user from 1 and are
-- never reused; a deleted version stays as a tombstone so that deleting it again succeeds
-- ("If the backup was previously deleted, the call should succeed").
CREATE TABLE e2e_room_keys_versions (
    -- The local user owning the backup.
    user_id     TEXT NOT NULL,
    -- The backup version; clients see it as a decimal string.
    version     BIGINT NOT NULL,
    -- The backup algorithm, e.g. "m.megolm_backup.v1.curve25519-aes-sha2".
    algorithm   TEXT NOT NULL,
    -- Algorithm-dependent `auth_data` exactly as the client sent it.
    auth_data   JSONB NOT NULL,
    -- Bumped whenever stored keys change; clients see it as the opaque `etag`.
    etag        BIGINT NOT NULL DEFAULT 0,
    -- Deleted versions keep their number (and answer DELETE with success), nothing else.
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

-- The backed-up session keys of one backup version (KeyBackupData).
CREATE TABLE e2e_room_keys (
    user_id              TEXT NOT NULL,
    version              BIGINT NOT NULL,
    -- The room and megolm session the key is for.
    room_id              TEXT NOT NULL,
    session_id           TEXT NOT NULL,
    -- The replacement rules compare these three (is_verified, then first_message_index,
    -- then forwarded_count).
    first_message_index  BIGINT NOT NULL,
    forwarded_count      BIGINT NOT NULL,
    is_verified          BOOLEAN NOT NULL,
    -- Algorithm-dependent encrypted `session_data`, as sent.
    session_data         JSONB NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES e2e_room_keys_versions (user_id, version)
        ON DELETE CASCADE
);

-- C-S "Server Side Search": the searchable text of an event. Only m.room.message (its
-- content.body), m.room.name (content.name) and m.room.topic (content.topic) are searched,
-- so each event has at most one searchable key and the text is picked by type. The events
-- table keeps the PDU as canonical JSON text; the vector is an expression index over it, so
-- nothing on the write path changes and redacted events are dropped by `redacted_because`.
CREATE FUNCTION event_search_vector(event_type TEXT, pdu TEXT) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_tsvector(
        'english'::regconfig,
        COALESCE(
            (pdu::jsonb) -> 'content' ->> (
                CASE event_type
                    WHEN 'm.room.name' THEN 'name'
                    WHEN 'm.room.topic' THEN 'topic'
                    ELSE 'body'
                END
            ),
            ''
        )
    );

CREATE INDEX events_search ON events USING GIN (event_search_vector(type, json))
    WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic');

-- C-S "OpenID": tokens a user asks for to prove their identity to a third party, which the
-- third party checks through GET /_matrix/federation/v1/openid/userinfo.
CREATE TABLE openid_tokens (
    -- The opaque token handed to the client.
    token       TEXT PRIMARY KEY,
    -- The local user it identifies.
    user_id     TEXT NOT NULL,
    -- When it stops being valid, milliseconds since the Unix epoch.
    expires_ts  BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
