-- Schema 10: room on each page of sessions for the new version of a row,
-- so that a refresh or renewal, which changes no indexed column (ended_at
-- holds the hour a session ends by), updates it in place (HOT) without
-- touching the five indexes. Pages written before keep their fill until
-- they are rewritten.
ALTER TABLE sessions SET (fillfactor = 70);
