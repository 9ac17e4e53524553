-- Schema version 7: events across runs by time, for `countersign export`
-- and `GET /api/v1/events` (pages seek on (at, run_id, seq)).
CREATE INDEX IF NOT EXISTS events_by_time ON events (at, run_id, seq);
