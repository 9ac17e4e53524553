-- Version 10: free-text search over run inputs: the input's words
-- (letters and digits; everything else separates words, as SQLite's
-- unicode61 tokenizer does) as a stored column with a GIN index. Stored,
-- so a query never recomputes it per row and the planner has statistics.
ALTER TABLE runs ADD COLUMN input_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', regexp_replace(input, '[^[:alnum:]]+', ' ', 'g'))) STORED;
CREATE INDEX runs_input_words ON runs USING GIN (input_words);
