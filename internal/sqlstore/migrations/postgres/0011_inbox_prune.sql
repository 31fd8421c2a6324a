-- The inbox (processed_events) only has to remember events that can still be
-- delivered again; outbox.PruneInbox deletes older rows by processed_at.
CREATE INDEX processed_events_at ON processed_events(processed_at);
