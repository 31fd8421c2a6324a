-- Accounts.
CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
	email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
	password_hash TEXT NOT NULL,
	created_at    INTEGER NOT NULL
);

-- Sessions: the bearer token or cookie value is never stored, only its SHA-256.
CREATE TABLE sessions (
	id         INTEGER PRIMARY KEY,
	token_hash BLOB NOT NULL UNIQUE,
	user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- Resumable uploads; the tus upload ID is the video ID the upload becomes.
CREATE TABLE uploads (
	id          TEXT PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users(id),
	video_id    INTEGER NOT NULL UNIQUE,
	filename    TEXT NOT NULL,
	title       TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	size        INTEGER NOT NULL,
	state       TEXT NOT NULL,  -- uploading | finished
	created_at  INTEGER NOT NULL,
	finished_at INTEGER
);

-- Media items (videos and images).
CREATE TABLE videos (
	id            INTEGER PRIMARY KEY,
	user_id       INTEGER NOT NULL REFERENCES users(id),
	kind          TEXT NOT NULL DEFAULT '',        -- video | image, known after probing
	title         TEXT NOT NULL,
	description   TEXT NOT NULL DEFAULT '',
	status        TEXT NOT NULL,                   -- processing | ready | failed
	error         TEXT NOT NULL DEFAULT '',
	progress      REAL NOT NULL DEFAULT 0,
	source_key    TEXT NOT NULL,
	source_size   INTEGER NOT NULL,
	duration      REAL NOT NULL DEFAULT 0,
	width         INTEGER NOT NULL DEFAULT 0,
	height        INTEGER NOT NULL DEFAULT 0,
	master_key    TEXT NOT NULL DEFAULT '',
	thumbnail_key TEXT NOT NULL DEFAULT '',
	variants      TEXT NOT NULL DEFAULT '[]',      -- JSON
	attempts      INTEGER NOT NULL DEFAULT 0,
	enqueued_at   INTEGER,                         -- NULL until the job is on the queue
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL,
	ready_at      INTEGER
);
CREATE INDEX videos_status_id ON videos(status, id DESC);
CREATE INDEX videos_user ON videos(user_id, id DESC);

-- Domain events, written in the transaction that caused them (the outbox of
-- the dispatcher issue starts here).
CREATE TABLE events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	kind       TEXT NOT NULL,
	subject_id INTEGER NOT NULL,
	payload    TEXT NOT NULL DEFAULT '{}',
	created_at INTEGER NOT NULL
);
CREATE INDEX events_subject ON events(subject_id, kind);
