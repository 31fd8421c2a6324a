-- PostgreSQL version of ../0010_archive.sql (internal/archive).
CREATE TABLE archive_partitions (
	table_name TEXT NOT NULL,
	start_at   BIGINT NOT NULL,
	end_at     BIGINT NOT NULL,
	state      TEXT NOT NULL,
	object_key TEXT NOT NULL,
	row_count  BIGINT NOT NULL DEFAULT 0,
	bytes      BIGINT NOT NULL DEFAULT 0,
	checksum   TEXT NOT NULL DEFAULT '',
	min_id     BIGINT NOT NULL DEFAULT 0,
	max_id     BIGINT NOT NULL DEFAULT 0,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (table_name, start_at)
);

CREATE TABLE archive_lease (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL DEFAULT '',
	expires_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO archive_lease(name) VALUES ('archive');

CREATE INDEX IF NOT EXISTS events_created ON events(created_at);
-- notifications comes from the PostgreSQL port of 0004; the guard keeps
-- this migration valid on a store migrated before that port existed.
DO $$
BEGIN
	IF to_regclass('notifications') IS NOT NULL THEN
		CREATE INDEX IF NOT EXISTS notifications_created ON notifications(created_at);
	END IF;
END
$$;
