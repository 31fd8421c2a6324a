-- Search (internal/search), PostgreSQL dialect of ../0007_search.sql: the
-- like counters the ranking uses and the indexer's state. The index itself
-- lives in the search engine (Bleve, or internal/search's PostgreSQL
-- driver, which creates its own tables).
CREATE TABLE search_popularity (
	kind  TEXT NOT NULL,
	id    BIGINT NOT NULL,
	likes BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (kind, id)
);

CREATE TABLE search_state (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
