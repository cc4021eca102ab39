-- 0005: room aliases, user profiles and forgotten rooms. SQL lives in
-- homeserver/storage/aliases.py, homeserver/storage/profiles.py and
-- homeserver/storage/room_directory.py. The published room directory itself is `rooms.is_public`
-- (0002).

-- Room aliases hosted by this server (C-S "Room aliases"): `#localpart:our.server` → room.
CREATE TABLE room_aliases (
    -- The full alias, "#localpart:server_name" (appendices "Room Aliases"), at most 255 bytes.
    room_alias  TEXT PRIMARY KEY CHECK (octet_length(room_alias) <= 255),
    -- The room it points at (may be a room this server has since left).
    room_id     TEXT NOT NULL,
    -- The user who created the mapping; they may delete it again.
    creator     TEXT NOT NULL,
    -- When it was created, milliseconds since the Unix epoch.
    created_ts  BIGINT NOT NULL
);
-- GET /rooms/{roomId}/aliases.
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Profiles of local users (C-S "Profiles"). No row: the user never changed their profile and
-- has the default one (display name = localpart).
CREATE TABLE profiles (
    -- A local user.
    user_id       TEXT PRIMARY KEY REFERENCES users (user_id),
    -- `displayname`; NULL when unset.
    displayname   TEXT,
    -- `avatar_url` (an mxc:// URI); NULL when unset.
    avatar_url    TEXT,
    -- Every other profile field (`m.tz`, custom namespaced keys), as a JSON object (C-S v1.16
    -- "Profiles": arbitrary fields, the whole profile under 64 KiB).
    other_fields  JSONB NOT NULL DEFAULT '{}'::jsonb
);

-- Rooms a local user has forgotten (C-S "Leaving rooms", POST /rooms/{roomId}/forget). A row
-- applies while `event_id` is still the user's current membership event
-- (`local_current_membership.event_id`): re-joining, a new invite or a knock replaces that event
-- and so un-forgets the room without touching this table.
CREATE TABLE forgotten_rooms (
    -- A local user.
    user_id   TEXT NOT NULL,
    -- The room they forgot.
    room_id   TEXT NOT NULL,
    -- Their leave or ban membership event at the time they forgot the room.
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
