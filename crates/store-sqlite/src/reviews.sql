-- Countersign SQLite schema, version 2: review tasks and their decisions.
CREATE TABLE reviews (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    step_index    INTEGER NOT NULL,
    step_id       TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL,
    fields        TEXT NOT NULL,
    min_approvals INTEGER NOT NULL,
    submitter     TEXT,
    deadline_at   INTEGER,
    on_deadline   TEXT NOT NULL,
    notify        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    decided_at    INTEGER,
    decided_by    TEXT,
    reason        TEXT,
    rev           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX reviews_by_step ON reviews (run_id, step_index);
CREATE INDEX reviews_by_status ON reviews (status, queue, id);

-- Every decision act, in order (approvals of a four-eyes task included).
CREATE TABLE review_acts (
    review_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    decision  TEXT NOT NULL,
    edits     TEXT NOT NULL,
    comment   TEXT,
    reason    TEXT,
    queue     TEXT,
    at        INTEGER NOT NULL,
    PRIMARY KEY (review_id, seq)
) WITHOUT ROWID;

-- Per field of an approved task: AI draft, approved value, changed or not,
-- who, when, comment. The ground truth for calibration.
CREATE TABLE review_fields (
    review_id  TEXT NOT NULL,
    field      TEXT NOT NULL,
    pos        INTEGER NOT NULL,
    draft      TEXT NOT NULL,
    value      TEXT NOT NULL,
    changed    INTEGER NOT NULL,
    decided_by TEXT NOT NULL,
    decided_at INTEGER NOT NULL,
    comment    TEXT,
    PRIMARY KEY (review_id, field)
) WITHOUT ROWID;
