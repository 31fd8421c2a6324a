ALTER TABLE events ADD COLUMN published_at BIGINT;
CREATE INDEX events_unpublished ON events(id) WHERE published_at IS NULL;

CREATE TABLE processed_events (
	consumer     TEXT NOT NULL,
	event_id     BIGINT NOT NULL,
	processed_at BIGINT NOT NULL,
	PRIMARY KEY (consumer, event_id)
);
