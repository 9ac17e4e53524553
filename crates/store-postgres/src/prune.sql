-- Version 9: retention. What is kept of a pruned run, and the append-only
-- rule relaxed for exactly those runs: a run's events can be deleted only
-- once its summary exists (`countersign prune` writes both in one
-- transaction).
CREATE TABLE pruned_runs (
    run_id     TEXT PRIMARY KEY,
    workflow   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    pruned_at  BIGINT NOT NULL,
    mac        TEXT
);
CREATE FUNCTION countersign_pruned_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pruned run summaries are append-only';
END;
$$;
CREATE TRIGGER pruned_runs_append_only BEFORE UPDATE OR DELETE ON pruned_runs
FOR EACH ROW EXECUTE FUNCTION countersign_pruned_append_only();
CREATE OR REPLACE FUNCTION countersign_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM pruned_runs WHERE run_id = OLD.run_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'events are append-only';
END;
$$;
-- Retention scans ended runs by age.
CREATE INDEX runs_by_updated ON runs (updated_at, id);
