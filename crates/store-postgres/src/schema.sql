-- Countersign PostgreSQL schema, version 1. Times are milliseconds since
-- the epoch (BIGINT), stored JSON is TEXT: the store never parses what it
-- only keeps. Mirrors store-sqlite's schema.sql table for table.
CREATE TABLE workflows (
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    source     TEXT NOT NULL,
    path       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX workflows_by_hash ON workflows (name, hash);

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    version         BIGINT NOT NULL,
    status          TEXT NOT NULL,
    wait            TEXT,
    step_index      BIGINT NOT NULL DEFAULT 0,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    outcome         TEXT,
    error           TEXT,
    input           TEXT NOT NULL,
    idempotency_key TEXT,
    rev             BIGINT NOT NULL,
    event_seq       BIGINT NOT NULL,
    step_seq        BIGINT NOT NULL DEFAULT 0,
    last_hash       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
) WITH (fillfactor = 80); -- room for HOT updates: most step commits change no indexed column
CREATE UNIQUE INDEX runs_by_idempotency ON runs (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_workflow ON runs (workflow, id);
CREATE INDEX runs_by_status ON runs (status, id);

-- One row per step attempt; seq orders a run's attempts.
CREATE TABLE steps (
    run_id      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    step_index  BIGINT NOT NULL,
    step_id     TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- At most one work item per run: the next thing to do and who holds it.
-- Lock order everywhere: a run's work row before its runs row (claims
-- discover runs through work rows), several rows in run_id order.
CREATE TABLE work (
    run_id      TEXT PRIMARY KEY,
    run_at      BIGINT NOT NULL,
    locked_by   TEXT,
    lease_until BIGINT
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_cost_delay = 0, vacuum_truncate = false);
-- A queue: vacuum its dead rows early, and never truncate it (truncation
-- takes an exclusive lock that stalls every claim and commit).
CREATE INDEX work_due ON work (run_at) WHERE locked_by IS NULL;
CREATE INDEX work_leased ON work (lease_until) WHERE locked_by IS NOT NULL;
CREATE INDEX work_by_node ON work (locked_by) WHERE locked_by IS NOT NULL;

-- The effect journal, keyed by idempotency key.
CREATE TABLE effects (
    key            TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL,
    step_id        TEXT NOT NULL,
    status         TEXT NOT NULL,
    request_digest TEXT,
    external_id    TEXT,
    started_at     BIGINT NOT NULL,
    completed_at   BIGINT
);
CREATE INDEX effects_by_run ON effects (run_id);

-- Append-only, hash-chained audit log.
CREATE TABLE events (
    run_id    TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    data      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE FUNCTION countersign_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION countersign_events_append_only();

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    hash       TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
