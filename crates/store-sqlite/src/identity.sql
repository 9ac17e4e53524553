-- Countersign SQLite schema, version 5: one identity per person. A token
-- may act for a user, and every review act records the user behind it
-- (whatever the channel), so four-eyes compares people, not actor names.
ALTER TABLE tokens ADD COLUMN user_id TEXT;
ALTER TABLE review_acts ADD COLUMN user_id TEXT;
