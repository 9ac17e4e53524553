-- Countersign SQLite schema, version 4: review integrations (Slack
-- identities, single-use nonces, the notification journal, settings).
-- Version 3 (users and sessions) is another module's; every statement here
-- is idempotent so the runner may apply 4 before or after 3.
CREATE TABLE IF NOT EXISTS slack_identities (
    slack_user TEXT PRIMARY KEY,
    actor      TEXT NOT NULL,
    queues     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS used_nonces (
    nonce     TEXT PRIMARY KEY,
    review_id TEXT NOT NULL,
    used_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS notifications (
    key         TEXT PRIMARY KEY,
    review_id   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    status      TEXT NOT NULL,
    external_id TEXT,
    attempts    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notifications_by_review ON notifications (review_id);

CREATE TABLE IF NOT EXISTS integration_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
