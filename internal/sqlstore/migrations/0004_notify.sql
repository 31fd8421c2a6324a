-- Notifications (internal/notify).

-- The in-app inbox: the source of truth for every notification. Live
-- updates, emails and push messages are derived from these rows. The
-- de-duplication key is unique per recipient, so the same fact (this video
-- became ready, this comment was written) is notified once however many
-- times its event arrives.
CREATE TABLE notifications (
	id         INTEGER PRIMARY KEY,            -- time-ordered ID; also the SSE event ID
	user_id    INTEGER NOT NULL,               -- recipient
	type       TEXT NOT NULL,                  -- new_upload | video_ready | video_failed | comment | new_follower
	actor_id   INTEGER NOT NULL DEFAULT 0,     -- who caused it (0: the system)
	subject_id INTEGER NOT NULL DEFAULT 0,     -- video, or the follower for new_follower
	dedup_key  TEXT NOT NULL,
	body       TEXT NOT NULL DEFAULT '{}',     -- JSON: title, text, url
	in_app     INTEGER NOT NULL DEFAULT 1,     -- 0: the user turned the web channel off for this type
	created_at INTEGER NOT NULL,
	read_at    INTEGER,
	UNIQUE (user_id, dedup_key)
);
CREATE INDEX notifications_user ON notifications(user_id, id);
CREATE INDEX notifications_unread ON notifications(user_id) WHERE read_at IS NULL AND in_app = 1;

-- Per-user choices: one row per type and channel the user changed; no row
-- means the default (on).
CREATE TABLE notify_preferences (
	user_id INTEGER NOT NULL,
	type    TEXT NOT NULL,
	channel TEXT NOT NULL,                     -- web | email | push
	enabled INTEGER NOT NULL,
	PRIMARY KEY (user_id, type, channel)
) WITHOUT ROWID;

-- Per-user email mode and digest bookkeeping.
CREATE TABLE notify_settings (
	user_id        INTEGER PRIMARY KEY,
	email_digest   TEXT NOT NULL DEFAULT 'instant', -- instant | hourly | daily
	last_digest_at INTEGER NOT NULL DEFAULT 0
);

-- Browsers that subscribed to Web Push. Dropped when the push service
-- answers 404 or 410.
CREATE TABLE notify_push_subscriptions (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER NOT NULL,
	endpoint   TEXT NOT NULL UNIQUE,
	p256dh     TEXT NOT NULL,
	auth       TEXT NOT NULL,
	user_agent TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	last_ok_at INTEGER
);
CREATE INDEX notify_push_subscriptions_user ON notify_push_subscriptions(user_id, id);

-- Live hints waiting to be routed to the frontend holding the user; a row
-- is deleted when it is routed (after the transaction that wrote it).
CREATE TABLE notify_live (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	notification_id INTEGER NOT NULL,
	user_id         INTEGER NOT NULL
);

-- Upload fan-out to followers, done a page of followers per transaction;
-- cursor is the last follower ID done.
CREATE TABLE notify_fanout (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	type       TEXT NOT NULL,
	actor_id   INTEGER NOT NULL,
	subject_id INTEGER NOT NULL,
	body       TEXT NOT NULL,
	cursor     INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	UNIQUE (type, subject_id)
);

-- The outbox of the email channel: one row per email to send (a single
-- notification or a digest). Claimed by setting status 'sending' before
-- the SMTP conversation (mark before send); see internal/notify/README.md
-- for the delivery guarantee.
CREATE TABLE notify_emails (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER NOT NULL,
	kind       TEXT NOT NULL,                  -- single | digest
	status     TEXT NOT NULL,                  -- pending | sending | sent | failed | unknown
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL,
	message_id TEXT NOT NULL DEFAULT '',
	last_error TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	sent_at    INTEGER
);
CREATE INDEX notify_emails_due ON notify_emails(status, next_at);

-- One row per notification and channel (email, push), written in the same
-- transaction as the notification.
--   email: held (waiting for the user's digest) | queued (in email_id) |
--          skipped (read in the app before the digest went out)
--   push:  pending | sending | sent | failed | skipped | unknown
CREATE TABLE notify_deliveries (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	notification_id INTEGER NOT NULL,
	user_id         INTEGER NOT NULL,
	channel         TEXT NOT NULL,
	status          TEXT NOT NULL,
	email_id        INTEGER,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_at         INTEGER NOT NULL,
	done_subs       TEXT NOT NULL DEFAULT '[]',  -- push: subscription IDs already delivered to
	last_error      TEXT NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	UNIQUE (notification_id, channel)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries(channel, status, next_at);
CREATE INDEX notify_deliveries_email ON notify_deliveries(email_id) WHERE email_id IS NOT NULL;
CREATE INDEX notify_deliveries_held ON notify_deliveries(user_id) WHERE status = 'held';
