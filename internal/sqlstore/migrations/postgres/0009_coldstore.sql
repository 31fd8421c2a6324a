ALTER TABLE videos ADD COLUMN last_viewed_at BIGINT;
ALTER TABLE videos ADD COLUMN storage TEXT NOT NULL DEFAULT 'hot';
CREATE INDEX videos_storage ON videos(storage, ready_at);
