-- 0009: end-to-end encryption keys (C-S "End-to-End Encryption"). SQL lives in
-- homeserver/storage/e2e_keys.py. The to-device inbox (device_inbox) and the device list
-- change stream (device_lists_stream) are in 0006; send-to-device txnIds go to
-- client_transactions (0002).

-- Identity keys of a device, as uploaded by POST /keys/upload (`device_keys`).
CREATE TABLE device_keys (
    -- Owner of the device (a local user).
    user_id   TEXT NOT NULL,
    -- The device the keys belong to.
    device_id TEXT NOT NULL,
    -- The signed DeviceKeys object, JSON text, as uploaded (plus later signatures).
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys waiting to be claimed (POST /keys/claim takes and deletes one).
CREATE TABLE one_time_keys (
    -- Owner of the device.
    user_id    TEXT NOT NULL,
    -- The device that uploaded the key.
    device_id  TEXT NOT NULL,
    -- Key algorithm, e.g. "signed_curve25519" (the part before ':' of the key ID).
    algorithm  TEXT NOT NULL,
    -- Key ID (the part after ':').
    key_id     TEXT NOT NULL,
    -- The key: a string or a signed key object, JSON text.
    key_json   TEXT NOT NULL,
    -- Upload order: the oldest key is claimed first.
    added      BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX one_time_keys_claim ON one_time_keys (user_id, device_id, algorithm, added);

-- Fallback keys: one per device and algorithm, handed out when one-time keys run out.
CREATE TABLE fallback_keys (
    -- Owner of the device.
    user_id    TEXT NOT NULL,
    -- The device that uploaded the key.
    device_id  TEXT NOT NULL,
    -- Key algorithm.
    algorithm  TEXT NOT NULL,
    -- Key ID.
    key_id     TEXT NOT NULL,
    -- The signed key object, JSON text.
    key_json   TEXT NOT NULL,
    -- Whether it was claimed since it was uploaded (device_unused_fallback_key_types).
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys of a user (C-S "Cross-signing"): the newest of each type is current.
CREATE TABLE cross_signing_keys (
    -- Owner of the keys.
    user_id   TEXT NOT NULL,
    -- "master", "self_signing" or "user_signing".
    key_type  TEXT NOT NULL CHECK (key_type IN ('master', 'self_signing', 'user_signing')),
    -- The CrossSigningKey object, JSON text (plus signatures uploaded later).
    key_json  TEXT NOT NULL,
    -- Position in device_lists_stream_seq of the upload.
    stream    BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded by POST /keys/signatures/upload, merged into the keys they sign when
-- those are served.
CREATE TABLE e2e_signatures (
    -- Who made the signature.
    signer_user_id  TEXT NOT NULL,
    -- The signing key ID, e.g. "ed25519:<base64 public key>".
    signer_key_id   TEXT NOT NULL,
    -- Owner of the signed key.
    target_user_id  TEXT NOT NULL,
    -- The signed device ID, or the public key of the signed cross-signing key.
    target_key      TEXT NOT NULL,
    -- The signature, unpadded base64.
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key, signer_user_id, signer_key_id)
);
