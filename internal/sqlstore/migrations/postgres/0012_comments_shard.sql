-- Comments are the platform's sharded table (database.shard_catalog,
-- internal/sqlstore/shard): the row's logical shard — the idgen shard bits of
-- its ID, which the service takes from the video's ID — is a column and leads
-- the primary key, as shard.Move requires (the replica identity must contain
-- it for row-filtered publications). On a shard cluster the videos and users
-- a comment names live in the main database, so the foreign keys go; the
-- service checks both before it writes.
ALTER TABLE comments ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
UPDATE comments SET shard = ((id >> 10) & 4095)::INTEGER;
ALTER TABLE comments ALTER COLUMN shard DROP DEFAULT;
ALTER TABLE comments DROP CONSTRAINT IF EXISTS comments_pkey;
ALTER TABLE comments ADD PRIMARY KEY (shard, id);
ALTER TABLE comments DROP CONSTRAINT IF EXISTS comments_video_id_fkey;
ALTER TABLE comments DROP CONSTRAINT IF EXISTS comments_user_id_fkey;
