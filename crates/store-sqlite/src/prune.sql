-- Version 9: retention. What is kept of a pruned run, and the append-only
-- rule relaxed for exactly those runs: a run's events can be deleted only
-- once its summary exists (`countersign prune` writes both in one
-- transaction).
CREATE TABLE pruned_runs (
    run_id     TEXT PRIMARY KEY,
    workflow   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    pruned_at  INTEGER NOT NULL,
    mac        TEXT
) WITHOUT ROWID;
CREATE TRIGGER pruned_runs_append_only_update BEFORE UPDATE ON pruned_runs
BEGIN SELECT RAISE(ABORT, 'pruned run summaries are append-only'); END;
CREATE TRIGGER pruned_runs_append_only_delete BEFORE DELETE ON pruned_runs
BEGIN SELECT RAISE(ABORT, 'pruned run summaries are append-only'); END;
DROP TRIGGER events_append_only_delete;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
WHEN NOT EXISTS (SELECT 1 FROM pruned_runs WHERE run_id = OLD.run_id)
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
-- Retention scans ended runs by age.
CREATE INDEX runs_by_updated ON runs (updated_at, id);
