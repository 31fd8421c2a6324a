-- View counts, written back in batches from the frontends' counters
-- (internal/cache/tier.Counter): a hot video costs one UPDATE per second.
ALTER TABLE videos ADD COLUMN views INTEGER NOT NULL DEFAULT 0;
