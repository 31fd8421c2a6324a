-- Hot/cold tiering of high-volume tables (internal/archive): old time
-- partitions of events and notifications are exported to Parquet in object
-- storage, verified, recorded here, then deleted from the table.

-- One row per (table, partition) the archiver has started on. state:
--   exporting: the Parquet file is being written; the rows are all still
--              in the table (a run that finds this redoes the export)
--   exported:  the file at object_key is verified against the rows, which
--              are still in the table (a run re-verifies, then deletes)
--   archived:  the rows are deleted; object_key holds them
-- checksum is the order-independent SHA-256 sum of the rows' canonical
-- encoding (internal/archive); min_id and max_id bound the primary keys in
-- the file, so readers can skip files.
CREATE TABLE archive_partitions (
	table_name TEXT NOT NULL,
	start_at   INTEGER NOT NULL,               -- Unix seconds, inclusive
	end_at     INTEGER NOT NULL,               -- Unix seconds, exclusive
	state      TEXT NOT NULL,
	object_key TEXT NOT NULL,
	row_count  INTEGER NOT NULL DEFAULT 0,
	bytes      INTEGER NOT NULL DEFAULT 0,
	checksum   TEXT NOT NULL DEFAULT '',
	min_id     INTEGER NOT NULL DEFAULT 0,
	max_id     INTEGER NOT NULL DEFAULT 0,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (table_name, start_at)
);

-- The archiver's lock: one run at a time across processes, even outside
-- the maintenance leader; a killed run's lease expires.
CREATE TABLE archive_lease (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL DEFAULT '',
	expires_at INTEGER NOT NULL DEFAULT 0
);
INSERT INTO archive_lease(name) VALUES ('archive');

-- Logical partitions are ranges of created_at.
CREATE INDEX IF NOT EXISTS events_created ON events(created_at);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications(created_at);
