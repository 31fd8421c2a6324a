-- The outbox's events table for the payment package's standalone PostgreSQL
-- store (payment.MigratePostgres), with the same columns as the platform
-- store's (internal/sqlstore/migrations/postgres/0001_init.sql and 0002).
-- The payment tables themselves are internal/sqlstore's PostgreSQL
-- migration 0005_payment.sql, which MigratePostgres runs after this file,
-- so the platform store and the standalone store share one schema. Every
-- statement is idempotent.

CREATE TABLE IF NOT EXISTS events (
	id           BIGSERIAL PRIMARY KEY,
	kind         TEXT NOT NULL,
	subject_id   BIGINT NOT NULL,
	payload      TEXT NOT NULL DEFAULT '{}',
	created_at   BIGINT NOT NULL,
	published_at BIGINT
);
CREATE INDEX IF NOT EXISTS events_unpublished ON events(id) WHERE published_at IS NULL;
