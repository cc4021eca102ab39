-- 0004: other servers' signing keys, as fetched (S2S "Retrieving server keys").
-- Read by the keyring (homeserver/remote/keyring.py) to verify signatures on requests and
-- events, and served back by our notary endpoint (/_matrix/key/v2/query).

CREATE TABLE server_signing_keys (
    -- The server the key belongs to (appendices "Server Name").
    server_name    TEXT NOT NULL,
    -- Key ID, "ed25519:<version>".
    key_id         TEXT NOT NULL,
    -- The raw 32-byte ed25519 public key.
    verify_key     BYTEA NOT NULL CHECK (octet_length(verify_key) = 32),
    -- Until when the key may be used, milliseconds since the Unix epoch: for a key from
    -- `verify_keys`, the response's valid_until_ts capped at 7 days after fetched_ts
    -- (S2S "Publishing Keys"); for a key from `old_verify_keys`, its expired_ts.
    valid_until_ts BIGINT NOT NULL,
    -- Set for keys listed in `old_verify_keys`: when the server stopped using the key. Such
    -- keys verify events only, never requests. NULL for current keys.
    expired_ts     BIGINT,
    -- When we received the response this row comes from, milliseconds since the Unix epoch.
    fetched_ts     BIGINT NOT NULL,
    -- Who gave us the response: the server itself, or the notary we asked.
    fetched_from   TEXT NOT NULL,
    -- The whole signed key response as received (canonical JSON bytes), signatures included;
    -- re-signed by us when we answer as a notary. Bytes rather than jsonb so that what we
    -- verified is exactly what we serve.
    key_json       BYTEA NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
