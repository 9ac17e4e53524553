-- Countersign SQLite schema, version 1. Times are milliseconds since the epoch.
CREATE TABLE workflows (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    source     TEXT NOT NULL,
    path       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX workflows_by_hash ON workflows (name, hash);

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    wait            TEXT,
    step_index      INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    outcome         TEXT,
    error           TEXT,
    input           TEXT NOT NULL,
    idempotency_key TEXT,
    rev             INTEGER NOT NULL,
    event_seq       INTEGER NOT NULL,
    step_seq        INTEGER NOT NULL DEFAULT 0,
    last_hash       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX runs_by_idempotency ON runs (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_workflow ON runs (workflow, id);
CREATE INDEX runs_by_status ON runs (status, id);

-- One row per step attempt; seq orders a run's attempts.
CREATE TABLE steps (
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    step_index  INTEGER NOT NULL,
    step_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- At most one work item per run: the next thing to do and who holds it.
CREATE TABLE work (
    run_id      TEXT PRIMARY KEY,
    run_at      INTEGER NOT NULL,
    locked_by   TEXT,
    lease_until INTEGER
) WITHOUT ROWID;
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
    started_at     INTEGER NOT NULL,
    completed_at   INTEGER
) WITHOUT ROWID;
CREATE INDEX effects_by_run ON effects (run_id);

-- Append-only, hash-chained audit log.
CREATE TABLE events (
    run_id    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    data      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    hash       TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
