-- 0016: content reports (C-S "Reporting Content") and the index behind
-- GET /v1/rooms/{roomId}/timestamp_to_event. SQL lives in homeserver/storage/reports.py and
-- homeserver/storage/legacy_reads.py.

-- Reports of events, rooms and users by local users. Only server administrators read them,
-- straight from the database ("Servers are free to handle the reported content however they
-- desire"); nothing is sent to other servers or to room moderators.
CREATE TABLE content_reports (
    report_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The local user who sent the report.
    reporter        TEXT NOT NULL,
    -- What is reported: an event (POST /rooms/{roomId}/report/{eventId}), a room
    -- (POST /rooms/{roomId}/report, v1.13) or a user (POST /users/{userId}/report, v1.14).
    kind            TEXT NOT NULL CHECK (kind IN ('event', 'room', 'user')),
    -- The room reported, or the room of the reported event; NULL for a user report.
    room_id         TEXT,
    -- The reported event; set only for kind 'event'.
    event_id        TEXT,
    -- The reported user; set only for kind 'user'.
    reported_user   TEXT,
    -- The reporter's reason as given (may be empty; NULL when an event report gave none).
    reason          TEXT,
    -- When the report was received, milliseconds since the Unix epoch.
    received_ts     BIGINT NOT NULL,
    CHECK ((kind = 'event') = (event_id IS NOT NULL)),
    CHECK ((kind = 'user') = (reported_user IS NOT NULL)),
    CHECK ((kind = 'user') = (room_id IS NULL))
);
-- Administrators read the newest reports first.
CREATE INDEX content_reports_received ON content_reports (received_ts);

-- C-S "GET /timestamp_to_event": the room's event closest to a timestamp, either way.
CREATE INDEX events_room_origin_ts ON events (room_id, origin_server_ts);
