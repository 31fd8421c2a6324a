-- Transactional outbox: events are written in the transaction that caused
-- them and published to the broker by the relay, which records when.
ALTER TABLE events ADD COLUMN published_at INTEGER;
CREATE INDEX events_unpublished ON events(id) WHERE published_at IS NULL;

-- Inbox: which consumer has applied which event, written in the same
-- transaction as the consumer's own changes, so redeliveries are no-ops.
CREATE TABLE processed_events (
	consumer     TEXT NOT NULL,
	event_id     INTEGER NOT NULL,
	processed_at INTEGER NOT NULL,
	PRIMARY KEY (consumer, event_id)
);
