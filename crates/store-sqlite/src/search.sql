-- Version 10: free-text search over run inputs. A contentless FTS5 index
-- (the text stays in `runs`) keyed by `run_text.rowid`, kept by triggers:
-- a run's input never changes, so insert and delete are all there is.
-- `detail = none` keeps no word positions (a smaller index; the search
-- asks for words, not phrases). The triggers cost the hot path 15–19 % of
-- runs/s on a 2-core box with or without positions (BENCHMARKS.md).
CREATE TABLE run_text (
    rowid  INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE runs_fts USING fts5(
    input, content = '', contentless_delete = 1, detail = none,
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO run_text (run_id) SELECT id FROM runs ORDER BY id;
INSERT INTO runs_fts (rowid, input)
    SELECT t.rowid, r.input FROM run_text t JOIN runs r ON r.id = t.run_id;
CREATE TRIGGER runs_text_insert AFTER INSERT ON runs BEGIN
    INSERT INTO run_text (run_id) VALUES (new.id);
    INSERT INTO runs_fts (rowid, input) VALUES (last_insert_rowid(), new.input);
END;
CREATE TRIGGER runs_text_delete AFTER DELETE ON runs BEGIN
    DELETE FROM runs_fts WHERE rowid = (SELECT rowid FROM run_text WHERE run_id = old.id);
    DELETE FROM run_text WHERE run_id = old.id;
END;
