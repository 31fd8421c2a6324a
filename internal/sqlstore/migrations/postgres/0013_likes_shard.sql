-- Likes are sharded like comments (0012): the logical shard of the liked
-- video leads the primary key, and the foreign keys into the main database
-- go, since on a shard cluster the video and the user live elsewhere.
ALTER TABLE likes ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
UPDATE likes SET shard = ((video_id >> 10) & 4095)::INTEGER;
ALTER TABLE likes ALTER COLUMN shard DROP DEFAULT;
ALTER TABLE likes DROP CONSTRAINT IF EXISTS likes_pkey;
ALTER TABLE likes ADD PRIMARY KEY (shard, video_id, user_id);
ALTER TABLE likes DROP CONSTRAINT IF EXISTS likes_video_id_fkey;
ALTER TABLE likes DROP CONSTRAINT IF EXISTS likes_user_id_fkey;

-- Each sharded video's like count on its cluster (Config.Shards only),
-- moved with its shard: created from COUNT(*) at the video's first like or
-- unlike after sharding, then changed by each like and unlike.
CREATE TABLE like_counts (
	shard    INTEGER NOT NULL,
	video_id BIGINT NOT NULL,
	likes    BIGINT NOT NULL,
	PRIMARY KEY (shard, video_id)
);
