-- The logical shard of each comment (the idgen shard bits of its ID), as on
-- PostgreSQL, where comments can live on shard clusters (see
-- migrations/postgres/0012_comments_shard.sql). SQLite keeps its primary key
-- and foreign keys: it is never sharded.
ALTER TABLE comments ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
UPDATE comments SET shard = (id >> 10) & 4095;
