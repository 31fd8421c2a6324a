-- Payments (internal/payment), PostgreSQL dialect of ../0005_payment.sql
-- (read the comments there). The payment package's standalone PostgreSQL
-- store (payment.MigratePostgres) runs this same file after its own events
-- table, so every statement is idempotent. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS payment_intents (
	id             BIGINT PRIMARY KEY,
	kind           TEXT NOT NULL CHECK (kind IN ('tip', 'membership')),
	payer_id       BIGINT NOT NULL,
	creator_id     BIGINT NOT NULL CHECK (creator_id <> payer_id),
	video_id       BIGINT,
	membership_id  BIGINT,
	period         BIGINT,
	attempt        BIGINT NOT NULL DEFAULT 1,
	amount         BIGINT NOT NULL CHECK (amount > 0),
	fee            BIGINT NOT NULL CHECK (fee >= 0 AND fee < amount),
	currency       TEXT NOT NULL CHECK (length(currency) = 3),
	message        TEXT NOT NULL DEFAULT '',
	payment_method TEXT NOT NULL DEFAULT '',
	state          TEXT NOT NULL CHECK (state IN ('pending', 'requires_action', 'processing', 'succeeded', 'failed', 'canceled')),
	provider       TEXT NOT NULL,
	provider_ref   TEXT,
	client_secret  TEXT NOT NULL DEFAULT '',
	next_action    TEXT NOT NULL DEFAULT '',
	failure_reason TEXT NOT NULL DEFAULT '',
	day            BIGINT NOT NULL,
	version        BIGINT NOT NULL DEFAULT 0,
	polls          BIGINT NOT NULL DEFAULT 0,
	next_check_at  BIGINT NOT NULL DEFAULT 0,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL,
	UNIQUE (provider, provider_ref),
	UNIQUE (membership_id, period, attempt)
);
CREATE INDEX IF NOT EXISTS payment_intents_open ON payment_intents(state, next_check_at) WHERE state IN ('pending', 'requires_action', 'processing');
CREATE INDEX IF NOT EXISTS payment_intents_payer ON payment_intents(payer_id, id DESC);
CREATE INDEX IF NOT EXISTS payment_intents_creator ON payment_intents(creator_id, id DESC);
CREATE INDEX IF NOT EXISTS payment_intents_created ON payment_intents(created_at);

CREATE TABLE IF NOT EXISTS payment_idempotency (
	user_id     BIGINT NOT NULL,
	key         TEXT NOT NULL,
	operation   TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	resource_id BIGINT NOT NULL DEFAULT 0,
	status      BIGINT,
	response    TEXT,
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS payment_idempotency_created ON payment_idempotency(created_at);

CREATE TABLE IF NOT EXISTS payment_daily_totals (
	payer_id BIGINT NOT NULL,
	day      BIGINT NOT NULL,
	currency TEXT NOT NULL,
	amount   BIGINT NOT NULL CHECK (amount >= 0),
	PRIMARY KEY (payer_id, day, currency)
);

CREATE TABLE IF NOT EXISTS ledger_accounts (
	id         BIGSERIAL PRIMARY KEY,
	code       TEXT NOT NULL UNIQUE,
	type       TEXT NOT NULL CHECK (type IN ('asset', 'liability', 'revenue')),
	currency   TEXT NOT NULL CHECK (length(currency) = 3),
	owner_id   BIGINT,
	created_at BIGINT NOT NULL,
	UNIQUE (id, currency)
);
CREATE TABLE IF NOT EXISTS ledger_transactions (
	id         BIGSERIAL PRIMARY KEY,
	ref        TEXT NOT NULL UNIQUE,
	kind       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_entries (
	id             BIGSERIAL PRIMARY KEY,
	tx_id          BIGINT NOT NULL REFERENCES ledger_transactions(id),
	debit_account  BIGINT NOT NULL,
	credit_account BIGINT NOT NULL,
	currency       TEXT NOT NULL,
	amount         BIGINT NOT NULL CHECK (amount > 0),
	CHECK (debit_account <> credit_account),
	FOREIGN KEY (debit_account, currency) REFERENCES ledger_accounts(id, currency),
	FOREIGN KEY (credit_account, currency) REFERENCES ledger_accounts(id, currency)
);
CREATE INDEX IF NOT EXISTS ledger_entries_tx ON ledger_entries(tx_id);
CREATE INDEX IF NOT EXISTS ledger_entries_debit ON ledger_entries(debit_account);
CREATE INDEX IF NOT EXISTS ledger_entries_credit ON ledger_entries(credit_account);

CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'ledger: % is append-only', TG_TABLE_NAME;
END $$;
DO $$
DECLARE t TEXT;
BEGIN
	FOREACH t IN ARRAY ARRAY['ledger_accounts', 'ledger_transactions', 'ledger_entries'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = t || '_append_only') THEN
			EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION ledger_append_only()', t || '_append_only', t);
			EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()', t || '_no_truncate', t);
		END IF;
	END LOOP;
END $$;

CREATE OR REPLACE VIEW ledger_postings AS
	SELECT tx_id, debit_account AS account_id, currency, amount AS debit, 0::BIGINT AS credit FROM ledger_entries
	UNION ALL
	SELECT tx_id, credit_account AS account_id, currency, 0::BIGINT AS debit, amount AS credit FROM ledger_entries;
CREATE OR REPLACE VIEW ledger_balances AS
	SELECT a.id AS account_id, a.code, a.type, a.currency, a.owner_id,
		COALESCE(SUM(p.debit), 0)::BIGINT AS debits, COALESCE(SUM(p.credit), 0)::BIGINT AS credits
	FROM ledger_accounts a LEFT JOIN ledger_postings p ON p.account_id = a.id
	GROUP BY a.id, a.code, a.type, a.currency, a.owner_id;

CREATE TABLE IF NOT EXISTS membership_plans (
	creator_id BIGINT PRIMARY KEY,
	amount     BIGINT NOT NULL CHECK (amount > 0),
	currency   TEXT NOT NULL CHECK (length(currency) = 3),
	updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
	id                   BIGINT PRIMARY KEY,
	member_id            BIGINT NOT NULL,
	creator_id           BIGINT NOT NULL CHECK (creator_id <> member_id),
	amount               BIGINT NOT NULL CHECK (amount > 0),
	currency             TEXT NOT NULL CHECK (length(currency) = 3),
	state                TEXT NOT NULL CHECK (state IN ('incomplete', 'active', 'past_due', 'canceled', 'incomplete_expired')),
	payment_method       TEXT NOT NULL,
	customer             TEXT NOT NULL DEFAULT '',
	provider             TEXT NOT NULL,
	period               BIGINT NOT NULL DEFAULT 0,
	period_end           BIGINT NOT NULL DEFAULT 0,
	cancel_at_period_end BIGINT NOT NULL DEFAULT 0,
	attempts             BIGINT NOT NULL DEFAULT 0,
	next_renewal_at      BIGINT NOT NULL DEFAULT 0,
	ended_reason         TEXT NOT NULL DEFAULT '',
	version              BIGINT NOT NULL DEFAULT 0,
	created_at           BIGINT NOT NULL,
	updated_at           BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memberships_live ON memberships(member_id, creator_id) WHERE state IN ('incomplete', 'active', 'past_due');
CREATE INDEX IF NOT EXISTS memberships_renewal ON memberships(state, next_renewal_at);
CREATE INDEX IF NOT EXISTS memberships_creator ON memberships(creator_id, id DESC);
CREATE INDEX IF NOT EXISTS memberships_member ON memberships(member_id, id DESC);

CREATE TABLE IF NOT EXISTS payouts (
	id             BIGINT PRIMARY KEY,
	creator_id     BIGINT NOT NULL,
	amount         BIGINT NOT NULL CHECK (amount > 0),
	currency       TEXT NOT NULL CHECK (length(currency) = 3),
	state          TEXT NOT NULL CHECK (state IN ('pending', 'in_transit', 'paid', 'failed')),
	provider       TEXT NOT NULL,
	provider_ref   TEXT,
	destination    TEXT NOT NULL,
	failure_reason TEXT NOT NULL DEFAULT '',
	version        BIGINT NOT NULL DEFAULT 0,
	polls          BIGINT NOT NULL DEFAULT 0,
	next_check_at  BIGINT NOT NULL DEFAULT 0,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL,
	UNIQUE (provider, provider_ref)
);
CREATE INDEX IF NOT EXISTS payouts_open ON payouts(state, next_check_at) WHERE state IN ('pending', 'in_transit');
CREATE INDEX IF NOT EXISTS payouts_creator ON payouts(creator_id, id DESC);
CREATE TABLE IF NOT EXISTS payout_accounts (
	creator_id  BIGINT NOT NULL,
	provider    TEXT NOT NULL,
	destination TEXT NOT NULL,
	updated_at  BIGINT NOT NULL,
	PRIMARY KEY (creator_id, provider)
);

CREATE TABLE IF NOT EXISTS payment_webhook_events (
	provider    TEXT NOT NULL,
	event_id    TEXT NOT NULL,
	type        TEXT NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (provider, event_id)
);
CREATE INDEX IF NOT EXISTS payment_webhook_events_received ON payment_webhook_events(received_at);

CREATE TABLE IF NOT EXISTS payment_webhook_endpoints (
	id         BIGINT PRIMARY KEY,
	creator_id BIGINT NOT NULL,
	url        TEXT NOT NULL,
	secret     TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_webhook_endpoints_creator ON payment_webhook_endpoints(creator_id);
CREATE TABLE IF NOT EXISTS payment_webhook_deliveries (
	id              BIGSERIAL PRIMARY KEY,
	endpoint_id     BIGINT NOT NULL REFERENCES payment_webhook_endpoints(id) ON DELETE CASCADE,
	event_id        TEXT NOT NULL,
	kind            TEXT NOT NULL,
	payload         TEXT NOT NULL,
	state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
	attempts        BIGINT NOT NULL DEFAULT 0,
	next_attempt_at BIGINT NOT NULL,
	last_status     BIGINT NOT NULL DEFAULT 0,
	last_error      TEXT NOT NULL DEFAULT '',
	created_at      BIGINT NOT NULL,
	delivered_at    BIGINT,
	UNIQUE (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS payment_webhook_deliveries_due ON payment_webhook_deliveries(state, next_attempt_at) WHERE state = 'pending';

CREATE TABLE IF NOT EXISTS payment_reconciliations (
	id          BIGSERIAL PRIMARY KEY,
	started_at  BIGINT NOT NULL,
	finished_at BIGINT NOT NULL,
	checked     BIGINT NOT NULL,
	drift       BIGINT NOT NULL,
	healed      BIGINT NOT NULL,
	summary     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_drift (
	id      BIGSERIAL PRIMARY KEY,
	run_id  BIGINT NOT NULL REFERENCES payment_reconciliations(id) ON DELETE CASCADE,
	kind    TEXT NOT NULL,
	subject TEXT NOT NULL,
	detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_drift_run ON payment_drift(run_id);
