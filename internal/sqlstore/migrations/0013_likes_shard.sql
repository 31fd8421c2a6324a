-- The logical shard of each like (its video's idgen shard bits), as on
-- PostgreSQL (migrations/postgres/0013_likes_shard.sql). SQLite is never
-- sharded and keeps its keys.
ALTER TABLE likes ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
UPDATE likes SET shard = (video_id >> 10) & 4095;

-- like_counts as on PostgreSQL (unused on SQLite, kept so both schemas
-- have the same tables).
CREATE TABLE like_counts (
	shard    INTEGER NOT NULL,
	video_id INTEGER NOT NULL,
	likes    INTEGER NOT NULL,
	PRIMARY KEY (shard, video_id)
);
