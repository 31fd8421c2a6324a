-- Search (internal/search). The like counters the search ranking uses,
-- changed in the same transaction as the search consumer's inbox row, so a
-- redelivered video.liked is never counted twice; the index documents get
-- the counter's value, which makes writing them idempotent.
CREATE TABLE search_popularity (
	kind  TEXT NOT NULL,              -- video | creator
	id    INTEGER NOT NULL,
	likes INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (kind, id)
) WITHOUT ROWID;

-- Indexer state; "reindex_started" is set while a rebuild from the tables
-- runs, so a rebuild cut short is started again at the next start.
CREATE TABLE search_state (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
