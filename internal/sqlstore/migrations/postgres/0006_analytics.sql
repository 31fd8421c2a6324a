-- Analytics (internal/analytics), PostgreSQL dialect of ../0006_analytics.sql. Rollups are written by one consumer in
-- batched transactions; each transaction also moves the consumer's stream
-- watermark, so a redelivered batch is never applied twice. Days are UTC
-- days since the Unix epoch, hours are hours since the epoch.

-- Stream watermarks: the last ANALYTICS stream sequence applied (rollup)
-- or written to Parquet (export), per consumer.
CREATE TABLE analytics_watermarks (
	name       TEXT PRIMARY KEY,
	last_seq   BIGINT NOT NULL,
	events     BIGINT NOT NULL DEFAULT 0,
	files      BIGINT NOT NULL DEFAULT 0,
	updated_at BIGINT NOT NULL
);

-- View sessions (one per page load): replay protection by per-session
-- event sequence, and the furthest second reached (retention).
CREATE TABLE analytics_sessions (
	id       BIGINT PRIMARY KEY,
	video_id BIGINT NOT NULL,
	viewer   BIGINT NOT NULL,
	state    BIGINT NOT NULL,           -- 1 started, 2 counted as a view
	max_seq  BIGINT NOT NULL,
	max_pos  BIGINT NOT NULL,           -- seconds; -1 before the view counted
	last_at  BIGINT NOT NULL            -- unix seconds of the last event
);
CREATE INDEX analytics_sessions_last ON analytics_sessions(last_at);

-- The last counted view per viewer and video: reloads inside the view
-- window do not count again.
CREATE TABLE analytics_viewer_views (
	video_id BIGINT NOT NULL,
	viewer   BIGINT NOT NULL,
	last_at  BIGINT NOT NULL,
	PRIMARY KEY (video_id, viewer)
);
CREATE INDEX analytics_viewer_views_last ON analytics_viewer_views(last_at);

-- Daily rollups. sketch is a serialized HyperLogLog of the day's viewers;
-- reach_s sums min(furthest second, duration) over counted views and
-- capacity_s sums the durations of counted views (average % watched).
CREATE TABLE analytics_video_daily (
	video_id   BIGINT NOT NULL,
	day        BIGINT NOT NULL,
	creator_id BIGINT NOT NULL,
	views      BIGINT NOT NULL DEFAULT 0,
	watch_ms   BIGINT NOT NULL DEFAULT 0,
	reach_s    BIGINT NOT NULL DEFAULT 0,
	capacity_s BIGINT NOT NULL DEFAULT 0,
	stalls     BIGINT NOT NULL DEFAULT 0,
	stall_ms   BIGINT NOT NULL DEFAULT 0,
	sketch     BYTEA,
	PRIMARY KEY (video_id, day)
);
CREATE INDEX analytics_video_daily_creator ON analytics_video_daily(creator_id, day);

CREATE TABLE analytics_creator_daily (
	creator_id BIGINT NOT NULL,
	day        BIGINT NOT NULL,
	views      BIGINT NOT NULL DEFAULT 0,
	watch_ms   BIGINT NOT NULL DEFAULT 0,
	reach_s    BIGINT NOT NULL DEFAULT 0,
	capacity_s BIGINT NOT NULL DEFAULT 0,
	stalls     BIGINT NOT NULL DEFAULT 0,
	stall_ms   BIGINT NOT NULL DEFAULT 0,
	sketch     BYTEA,
	PRIMARY KEY (creator_id, day)
);

CREATE TABLE analytics_platform_daily (
	day        BIGINT PRIMARY KEY,
	events     BIGINT NOT NULL DEFAULT 0,
	views      BIGINT NOT NULL DEFAULT 0,
	watch_ms   BIGINT NOT NULL DEFAULT 0,
	stalls     BIGINT NOT NULL DEFAULT 0,
	stall_ms   BIGINT NOT NULL DEFAULT 0,
	page_views BIGINT NOT NULL DEFAULT 0,
	sketch     BYTEA
);

-- Traffic by hour.
CREATE TABLE analytics_video_hourly (
	video_id BIGINT NOT NULL,
	hour     BIGINT NOT NULL,
	views    BIGINT NOT NULL DEFAULT 0,
	watch_ms BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (video_id, hour)
);
CREATE TABLE analytics_creator_hourly (
	creator_id BIGINT NOT NULL,
	hour       BIGINT NOT NULL,
	views      BIGINT NOT NULL DEFAULT 0,
	watch_ms   BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (creator_id, hour)
);
CREATE TABLE analytics_platform_hourly (
	hour       BIGINT PRIMARY KEY,
	events     BIGINT NOT NULL DEFAULT 0,
	views      BIGINT NOT NULL DEFAULT 0,
	watch_ms   BIGINT NOT NULL DEFAULT 0,
	page_views BIGINT NOT NULL DEFAULT 0
);

-- Retention: how many counted views of a video ended (so far) at each
-- second; the share still watching at second s is the suffix sum from s
-- divided by the views.
CREATE TABLE analytics_retention (
	video_id BIGINT NOT NULL,
	second   BIGINT NOT NULL,
	views    BIGINT NOT NULL,
	PRIMARY KEY (video_id, second)
);

-- Playback health by rendition: switches to it and time played on it.
CREATE TABLE analytics_renditions (
	video_id   BIGINT NOT NULL,
	day        BIGINT NOT NULL,
	rendition  TEXT NOT NULL,
	creator_id BIGINT NOT NULL,
	switches   BIGINT NOT NULL DEFAULT 0,
	watch_ms   BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (video_id, day, rendition)
);
CREATE INDEX analytics_renditions_creator ON analytics_renditions(creator_id, day);

-- Views by referring site.
CREATE TABLE analytics_referrers (
	video_id   BIGINT NOT NULL,
	day        BIGINT NOT NULL,
	referrer   TEXT NOT NULL,
	creator_id BIGINT NOT NULL,
	views      BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (video_id, day, referrer)
);
CREATE INDEX analytics_referrers_creator ON analytics_referrers(creator_id, day);

-- Page views by normalized path (IDs folded to {id}).
CREATE TABLE analytics_pages (
	day   BIGINT NOT NULL,
	path  TEXT NOT NULL,
	views BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (day, path)
);
