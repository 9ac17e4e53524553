-- Countersign PostgreSQL schema, version 2: review tasks and their
-- decisions. Mirrors store-sqlite's reviews.sql table for table.
CREATE TABLE reviews (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    step_index    BIGINT NOT NULL,
    step_id       TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL,
    fields        TEXT NOT NULL,
    min_approvals BIGINT NOT NULL,
    submitter     TEXT,
    deadline_at   BIGINT,
    on_deadline   TEXT NOT NULL,
    notify        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    decided_at    BIGINT,
    decided_by    TEXT,
    reason        TEXT,
    rev           BIGINT NOT NULL
);
CREATE UNIQUE INDEX reviews_by_step ON reviews (run_id, step_index);
CREATE INDEX reviews_by_status ON reviews (status, queue, id);

CREATE TABLE review_acts (
    review_id TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    decision  TEXT NOT NULL,
    edits     TEXT NOT NULL,
    comment   TEXT,
    reason    TEXT,
    queue     TEXT,
    at        BIGINT NOT NULL,
    PRIMARY KEY (review_id, seq)
);

CREATE TABLE review_fields (
    review_id  TEXT NOT NULL,
    field      TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    draft      TEXT NOT NULL,
    value      TEXT NOT NULL,
    changed    BOOLEAN NOT NULL,
    decided_by TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    comment    TEXT,
    PRIMARY KEY (review_id, field)
);
