-- Analytics (internal/analytics). Rollups are written by one consumer in
-- batched transactions; each transaction also moves the consumer's stream
-- watermark, so a redelivered batch is never applied twice. Days are UTC
-- days since the Unix epoch, hours are hours since the epoch.

-- Stream watermarks: the last ANALYTICS stream sequence applied (rollup)
-- or written to Parquet (export), per consumer.
CREATE TABLE analytics_watermarks (
	name       TEXT PRIMARY KEY,
	last_seq   INTEGER NOT NULL,
	events     INTEGER NOT NULL DEFAULT 0,
	files      INTEGER NOT NULL DEFAULT 0,
	updated_at INTEGER NOT NULL
);

-- View sessions (one per page load): replay protection by per-session
-- event sequence, and the furthest second reached (retention).
CREATE TABLE analytics_sessions (
	id       INTEGER PRIMARY KEY,
	video_id INTEGER NOT NULL,
	viewer   INTEGER NOT NULL,
	state    INTEGER NOT NULL,           -- 1 started, 2 counted as a view
	max_seq  INTEGER NOT NULL,
	max_pos  INTEGER NOT NULL,           -- seconds; -1 before the view counted
	last_at  INTEGER NOT NULL            -- unix seconds of the last event
);
CREATE INDEX analytics_sessions_last ON analytics_sessions(last_at);

-- The last counted view per viewer and video: reloads inside the view
-- window do not count again.
CREATE TABLE analytics_viewer_views (
	video_id INTEGER NOT NULL,
	viewer   INTEGER NOT NULL,
	last_at  INTEGER NOT NULL,
	PRIMARY KEY (video_id, viewer)
) WITHOUT ROWID;
CREATE INDEX analytics_viewer_views_last ON analytics_viewer_views(last_at);

-- Daily rollups. sketch is a serialized HyperLogLog of the day's viewers;
-- reach_s sums min(furthest second, duration) over counted views and
-- capacity_s sums the durations of counted views (average % watched).
CREATE TABLE analytics_video_daily (
	video_id   INTEGER NOT NULL,
	day        INTEGER NOT NULL,
	creator_id INTEGER NOT NULL,
	views      INTEGER NOT NULL DEFAULT 0,
	watch_ms   INTEGER NOT NULL DEFAULT 0,
	reach_s    INTEGER NOT NULL DEFAULT 0,
	capacity_s INTEGER NOT NULL DEFAULT 0,
	stalls     INTEGER NOT NULL DEFAULT 0,
	stall_ms   INTEGER NOT NULL DEFAULT 0,
	sketch     BLOB,
	PRIMARY KEY (video_id, day)
) WITHOUT ROWID;
CREATE INDEX analytics_video_daily_creator ON analytics_video_daily(creator_id, day);

CREATE TABLE analytics_creator_daily (
	creator_id INTEGER NOT NULL,
	day        INTEGER NOT NULL,
	views      INTEGER NOT NULL DEFAULT 0,
	watch_ms   INTEGER NOT NULL DEFAULT 0,
	reach_s    INTEGER NOT NULL DEFAULT 0,
	capacity_s INTEGER NOT NULL DEFAULT 0,
	stalls     INTEGER NOT NULL DEFAULT 0,
	stall_ms   INTEGER NOT NULL DEFAULT 0,
	sketch     BLOB,
	PRIMARY KEY (creator_id, day)
) WITHOUT ROWID;

CREATE TABLE analytics_platform_daily (
	day        INTEGER PRIMARY KEY,
	events     INTEGER NOT NULL DEFAULT 0,
	views      INTEGER NOT NULL DEFAULT 0,
	watch_ms   INTEGER NOT NULL DEFAULT 0,
	stalls     INTEGER NOT NULL DEFAULT 0,
	stall_ms   INTEGER NOT NULL DEFAULT 0,
	page_views INTEGER NOT NULL DEFAULT 0,
	sketch     BLOB
);

-- Traffic by hour.
CREATE TABLE analytics_video_hourly (
	video_id INTEGER NOT NULL,
	hour     INTEGER NOT NULL,
	views    INTEGER NOT NULL DEFAULT 0,
	watch_ms INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (video_id, hour)
) WITHOUT ROWID;
CREATE TABLE analytics_creator_hourly (
	creator_id INTEGER NOT NULL,
	hour       INTEGER NOT NULL,
	views      INTEGER NOT NULL DEFAULT 0,
	watch_ms   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (creator_id, hour)
) WITHOUT ROWID;
CREATE TABLE analytics_platform_hourly (
	hour       INTEGER PRIMARY KEY,
	events     INTEGER NOT NULL DEFAULT 0,
	views      INTEGER NOT NULL DEFAULT 0,
	watch_ms   INTEGER NOT NULL DEFAULT 0,
	page_views INTEGER NOT NULL DEFAULT 0
);

-- Retention: how many counted views of a video ended (so far) at each
-- second; the share still watching at second s is the suffix sum from s
-- divided by the views.
CREATE TABLE analytics_retention (
	video_id INTEGER NOT NULL,
	second   INTEGER NOT NULL,
	views    INTEGER NOT NULL,
	PRIMARY KEY (video_id, second)
) WITHOUT ROWID;

-- Playback health by rendition: switches to it and time played on it.
CREATE TABLE analytics_renditions (
	video_id   INTEGER NOT NULL,
	day        INTEGER NOT NULL,
	rendition  TEXT NOT NULL,
	creator_id INTEGER NOT NULL,
	switches   INTEGER NOT NULL DEFAULT 0,
	watch_ms   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (video_id, day, rendition)
) WITHOUT ROWID;
CREATE INDEX analytics_renditions_creator ON analytics_renditions(creator_id, day);

-- Views by referring site.
CREATE TABLE analytics_referrers (
	video_id   INTEGER NOT NULL,
	day        INTEGER NOT NULL,
	referrer   TEXT NOT NULL,
	creator_id INTEGER NOT NULL,
	views      INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (video_id, day, referrer)
) WITHOUT ROWID;
CREATE INDEX analytics_referrers_creator ON analytics_referrers(creator_id, day);

-- Page views by normalized path (IDs folded to {id}).
CREATE TABLE analytics_pages (
	day   INTEGER NOT NULL,
	path  TEXT NOT NULL,
	views INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (day, path)
) WITHOUT ROWID;
