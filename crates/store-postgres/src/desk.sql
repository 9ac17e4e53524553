-- Countersign PostgreSQL schema, version 8: the review desk's soft claims
-- (one row per task, refreshed while a reviewer works on it) and views
-- (when each task was shown to whom).
CREATE TABLE review_claims (
    review_id TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    email     TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE TABLE review_views (
    review_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX review_views_by_review ON review_views (review_id, at);
-- Pending tasks newest first without sorting every pending row (the
-- inbox reads a window of them, whatever the queue).
CREATE INDEX reviews_by_status_id ON reviews (status, id);
