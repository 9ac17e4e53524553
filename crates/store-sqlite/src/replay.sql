-- Countersign SQLite schema, version 6: the replay cache of signed webhook
-- requests (a signature is remembered until its timestamp leaves the
-- accepted window; every node shares it).
CREATE TABLE IF NOT EXISTS seen_signatures (
    signature  TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_signatures_by_expiry ON seen_signatures (expires_at);
