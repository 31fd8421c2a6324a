CREATE TABLE follows (
	follower_id BIGINT NOT NULL REFERENCES users(id),
	followee_id BIGINT NOT NULL REFERENCES users(id),
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX follows_followee ON follows(followee_id, follower_id);

-- read_merge is 0/1 like SQLite's, so the same statements work on both.
CREATE TABLE user_stats (
	user_id    BIGINT PRIMARY KEY REFERENCES users(id),
	followers  BIGINT NOT NULL DEFAULT 0 CHECK (followers >= 0),
	following  BIGINT NOT NULL DEFAULT 0 CHECK (following >= 0),
	read_merge INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE feed_items (
	user_id    BIGINT NOT NULL,
	video_id   BIGINT NOT NULL,
	creator_id BIGINT NOT NULL,
	PRIMARY KEY (user_id, video_id)
);
CREATE INDEX feed_items_creator ON feed_items(creator_id, user_id);

CREATE TABLE comments (
	id         BIGINT PRIMARY KEY,
	video_id   BIGINT NOT NULL REFERENCES videos(id),
	user_id    BIGINT NOT NULL REFERENCES users(id),
	body       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX comments_video ON comments(video_id, id DESC);

CREATE TABLE likes (
	video_id   BIGINT NOT NULL REFERENCES videos(id),
	user_id    BIGINT NOT NULL REFERENCES users(id),
	created_at BIGINT NOT NULL,
	PRIMARY KEY (video_id, user_id)
);

ALTER TABLE videos ADD COLUMN likes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN comments BIGINT NOT NULL DEFAULT 0;
