-- 0001: local user accounts.
-- The `schema_version` table is created by the migration runner itself
-- (homeserver/storage/migrations.py), not here.

CREATE TABLE users (
    -- Full Matrix user ID, "@localpart:server_name" (appendices "User Identifiers");
    -- at most 255 bytes. Only local users have a row here.
    user_id        TEXT PRIMARY KEY CHECK (octet_length(user_id) <= 255),
    -- argon2id hash in PHC string format ("$argon2id$v=19$m=...,t=...,p=...$salt$hash");
    -- NULL means the account has no password and cannot use m.login.password.
    password_hash  TEXT,
    -- Server administrator (Synapse-compatible admin API, register-user --admin).
    admin          BOOLEAN NOT NULL DEFAULT FALSE,
    -- Guest account (C-S "Guest Access"); guests have restricted permissions.
    is_guest       BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the account was created, milliseconds since the Unix epoch.
    created_ts     BIGINT NOT NULL,
    -- Deactivated (C-S "Account deactivation"): the user ID stays reserved, login is refused.
    deactivated    BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the account was deactivated, milliseconds since the Unix epoch; NULL while active.
    deactivated_ts BIGINT
);
