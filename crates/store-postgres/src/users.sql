-- Countersign PostgreSQL schema, version 3: people who sign in to the
-- review inbox, and their sessions. Idempotent: a database that reached
-- version 4 (review integrations) first still gets these tables.
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    queues        TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

-- Only the SHA-256 of a session's secret is kept.
CREATE TABLE IF NOT EXISTS sessions (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
