-- 0011: the content repository (C-S "Content repository", S2S "Content Repository"). SQL lives
-- in homeserver/storage/media.py; the bytes live on disk under `media.store_path`, one file per
-- distinct content, named by its SHA-256 (homeserver/services/media_files.py).

-- Media whose `mxc://` URI names this server: uploads, and IDs reserved by POST /media/v1/create.
CREATE TABLE local_media (
    -- The media ID of `mxc://<our server>/<media_id>`: random, [A-Za-z0-9_-] only.
    media_id           TEXT PRIMARY KEY CHECK (media_id ~ '^[A-Za-z0-9_-]{1,255}$'),
    -- The local user who uploaded it, or who created the ID (only they may upload to it).
    user_id            TEXT NOT NULL,
    -- When the ID was created or the content uploaded, milliseconds since the Unix epoch.
    created_ts         BIGINT NOT NULL,
    -- POST /create: the `unused_expires_at` after which an ID without content is void; NULL for
    -- direct uploads.
    unused_expires_ts  BIGINT,
    -- The `filename` given at upload, already sanitised; NULL when none was given.
    upload_name        TEXT,
    -- The Content-Type given at upload, normalised; NULL until content arrives.
    content_type       TEXT,
    -- Size in bytes; NULL until content arrives.
    media_length       BIGINT,
    -- Lowercase hex SHA-256 of the content, which names its file; NULL until content arrives
    -- (a created ID still waiting for its PUT /upload).
    sha256             TEXT
);
-- Counting a user's pending (created, not yet uploaded) IDs for the /create limit.
CREATE INDEX local_media_pending ON local_media (user_id) WHERE sha256 IS NULL;

-- Other servers' media, cached after the first download over federation.
CREATE TABLE remote_media_cache (
    -- The server name of the `mxc://` URI (the origin server).
    origin             TEXT NOT NULL,
    -- The media ID of the `mxc://` URI.
    media_id           TEXT NOT NULL CHECK (media_id ~ '^[A-Za-z0-9_-]{1,255}$'),
    -- When we downloaded it, milliseconds since the Unix epoch (the freeze of unauthenticated
    -- media counts remote media as new from this moment).
    cached_ts          BIGINT NOT NULL,
    -- The file name from the origin's Content-Disposition, sanitised; NULL when none.
    upload_name        TEXT,
    -- The origin's Content-Type, normalised.
    content_type       TEXT NOT NULL,
    -- Size in bytes.
    media_length       BIGINT NOT NULL,
    -- Lowercase hex SHA-256 of the content, which names its file.
    sha256             TEXT NOT NULL,
    PRIMARY KEY (origin, media_id)
);

-- Thumbnails generated from local or cached remote media, at the spec's recommended sizes.
CREATE TABLE media_thumbnails (
    -- The server name of the original's `mxc://` URI (ours for local media).
    origin             TEXT NOT NULL,
    -- The original's media ID.
    media_id           TEXT NOT NULL,
    -- The size asked of the thumbnailer (one of the recommended sizes), not the result's.
    width              INTEGER NOT NULL,
    height             INTEGER NOT NULL,
    -- `crop` or `scale`.
    method             TEXT NOT NULL CHECK (method IN ('crop', 'scale')),
    -- The thumbnail's own type: image/png or image/jpeg.
    content_type       TEXT NOT NULL,
    -- The thumbnail's size in bytes.
    media_length       BIGINT NOT NULL,
    -- Lowercase hex SHA-256 of the thumbnail, which names its file.
    sha256             TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method)
);
