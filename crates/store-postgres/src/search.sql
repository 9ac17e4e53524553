-- Version 10: free-text search over run inputs: a GIN index of the input's
-- words (letters and digits; everything else separates words, as SQLite's
-- unicode61 tokenizer does).
CREATE INDEX runs_input_words ON runs
    USING GIN (to_tsvector('simple', regexp_replace(input, '[^[:alnum:]]+', ' ', 'g')));
