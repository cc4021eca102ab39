-- 0010: positions for backfilled events (S2S "Backfilling and retrieving missing events").
-- Events fetched from other servers to fill a room's older history (GET /v1/backfill, for
-- /messages) are older than anything a /sync token covers: they take NEGATIVE stream
-- orderings from this descending sequence, so no stream reader (/sync, the federation
-- sender, push) ever sees them as new; /messages orders them by (depth, stream_ordering).
-- Written by homeserver/services/event_pipeline.py (`persist_remote_events(backfilled=True)`)
-- through homeserver/storage/events.py.
CREATE SEQUENCE events_backfill_stream_seq INCREMENT BY -1 MAXVALUE -1 START WITH -1;
