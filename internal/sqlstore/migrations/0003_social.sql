-- Follows, the home feed, comments and likes (internal/social).

CREATE TABLE follows (
	follower_id INTEGER NOT NULL REFERENCES users(id),
	followee_id INTEGER NOT NULL REFERENCES users(id),
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (follower_id, followee_id)
) WITHOUT ROWID;
CREATE INDEX follows_followee ON follows(followee_id, follower_id);

-- Per-user counters, kept in the transactions that change follows. A
-- creator whose follower count reached the fan-out threshold is switched
-- to merge-on-read for good (read_merge = 1): their uploads are no longer
-- written into every follower's feed.
CREATE TABLE user_stats (
	user_id    INTEGER PRIMARY KEY REFERENCES users(id),
	followers  INTEGER NOT NULL DEFAULT 0 CHECK (followers >= 0),
	following  INTEGER NOT NULL DEFAULT 0 CHECK (following >= 0),
	read_merge INTEGER NOT NULL DEFAULT 0
);

-- The materialised part of home feeds (fan-out on write).
CREATE TABLE feed_items (
	user_id    INTEGER NOT NULL,
	video_id   INTEGER NOT NULL,
	creator_id INTEGER NOT NULL,
	PRIMARY KEY (user_id, video_id)
) WITHOUT ROWID;
CREATE INDEX feed_items_creator ON feed_items(creator_id, user_id);

CREATE TABLE comments (
	id         INTEGER PRIMARY KEY,
	video_id   INTEGER NOT NULL REFERENCES videos(id),
	user_id    INTEGER NOT NULL REFERENCES users(id),
	body       TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX comments_video ON comments(video_id, id DESC);

CREATE TABLE likes (
	video_id   INTEGER NOT NULL REFERENCES videos(id),
	user_id    INTEGER NOT NULL REFERENCES users(id),
	created_at INTEGER NOT NULL,
	PRIMARY KEY (video_id, user_id)
) WITHOUT ROWID;

-- Counts shown with every video, changed in the transaction that inserts
-- or deletes the like or comment row, so they always equal the row counts.
ALTER TABLE videos ADD COLUMN likes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN comments INTEGER NOT NULL DEFAULT 0;
