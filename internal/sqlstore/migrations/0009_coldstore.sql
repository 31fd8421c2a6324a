-- Hot/cold storage of media (internal/coldstore): when a ready item was
-- last viewed (set by the view counter's flush), and where its objects are.
ALTER TABLE videos ADD COLUMN last_viewed_at INTEGER;
ALTER TABLE videos ADD COLUMN storage TEXT NOT NULL DEFAULT 'hot'; -- hot | moving | cold
CREATE INDEX videos_storage ON videos(storage, ready_at);
