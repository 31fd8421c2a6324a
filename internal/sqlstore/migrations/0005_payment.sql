-- Payments (internal/payment): intents and their state machine, idempotency
-- keys, a double-entry ledger, memberships, payouts, webhooks in and out,
-- reconciliation reports. Times are Unix milliseconds. The PostgreSQL
-- version of this schema is postgres/0005_payment.sql (also the payment
-- package's standalone schema); keep them in step.

-- Payment intents: one per payment attempt, created by exactly one
-- idempotency key (or one renewal of one membership period).
CREATE TABLE payment_intents (
	id             INTEGER PRIMARY KEY,
	kind           TEXT NOT NULL CHECK (kind IN ('tip', 'membership')),
	payer_id       INTEGER NOT NULL,
	creator_id     INTEGER NOT NULL CHECK (creator_id <> payer_id),
	video_id       INTEGER,
	membership_id  INTEGER,
	period         INTEGER,              -- membership period this intent pays (1 = first)
	attempt        INTEGER NOT NULL DEFAULT 1,
	amount         INTEGER NOT NULL CHECK (amount > 0),
	fee            INTEGER NOT NULL CHECK (fee >= 0 AND fee < amount),
	currency       TEXT NOT NULL CHECK (length(currency) = 3),
	message        TEXT NOT NULL DEFAULT '',
	payment_method TEXT NOT NULL DEFAULT '',
	state          TEXT NOT NULL CHECK (state IN ('pending', 'requires_action', 'processing', 'succeeded', 'failed', 'canceled')),
	provider       TEXT NOT NULL,
	provider_ref   TEXT,
	client_secret  TEXT NOT NULL DEFAULT '',
	next_action    TEXT NOT NULL DEFAULT '',
	failure_reason TEXT NOT NULL DEFAULT '',
	day            INTEGER NOT NULL,     -- UTC day (Unix days) counted against the daily limit
	version        INTEGER NOT NULL DEFAULT 0,
	polls          INTEGER NOT NULL DEFAULT 0,
	next_check_at  INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	UNIQUE (provider, provider_ref),
	UNIQUE (membership_id, period, attempt)
);
CREATE INDEX payment_intents_open ON payment_intents(state, next_check_at) WHERE state IN ('pending', 'requires_action', 'processing');
CREATE INDEX payment_intents_payer ON payment_intents(payer_id, id DESC);
CREATE INDEX payment_intents_creator ON payment_intents(creator_id, id DESC);
CREATE INDEX payment_intents_created ON payment_intents(created_at);

-- Idempotency keys: the request's fingerprint, the resource it created
-- (the recovery point) and, once the outcome is known, the response that
-- every retry gets back byte for byte.
CREATE TABLE payment_idempotency (
	user_id     INTEGER NOT NULL,
	key         TEXT NOT NULL,
	operation   TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	resource_id INTEGER NOT NULL DEFAULT 0,
	status      INTEGER,
	response    TEXT,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (user_id, key)
);
CREATE INDEX payment_idempotency_created ON payment_idempotency(created_at);

-- Running totals per payer, UTC day and currency for the daily limit. A
-- conditional UPDATE (amount + x <= limit) makes the check atomic on any
-- engine.
CREATE TABLE payment_daily_totals (
	payer_id INTEGER NOT NULL,
	day      INTEGER NOT NULL,
	currency TEXT NOT NULL,
	amount   INTEGER NOT NULL CHECK (amount >= 0),
	PRIMARY KEY (payer_id, day, currency)
);

-- Double-entry ledger. An entry moves a positive amount from one account
-- (debit) to another (credit) in one currency; a ledger transaction is one
-- or more entries written in one SQL transaction. Because every entry
-- debits and credits the same amount, every transaction balances by
-- construction: an unbalanced posting cannot be written at all. The
-- composite foreign keys make both accounts carry the entry's currency.
-- Balances are sums over the entries (ledger_balances); nothing stores
-- them. Accounts, transactions and entries are append-only: corrections are
-- new, reversing transactions.
CREATE TABLE ledger_accounts (
	id         INTEGER PRIMARY KEY,
	code       TEXT NOT NULL UNIQUE,     -- e.g. provider:test:USD, creator:42:USD, fees:USD
	type       TEXT NOT NULL CHECK (type IN ('asset', 'liability', 'revenue')),
	currency   TEXT NOT NULL CHECK (length(currency) = 3),
	owner_id   INTEGER,
	created_at INTEGER NOT NULL,
	UNIQUE (id, currency)
);
CREATE TABLE ledger_transactions (
	id         INTEGER PRIMARY KEY,
	ref        TEXT NOT NULL UNIQUE,      -- payment:<id>, payout:<id>, ...: a business event posts once
	kind       TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE ledger_entries (
	id             INTEGER PRIMARY KEY,
	tx_id          INTEGER NOT NULL REFERENCES ledger_transactions(id),
	debit_account  INTEGER NOT NULL,
	credit_account INTEGER NOT NULL,
	currency       TEXT NOT NULL,
	amount         INTEGER NOT NULL CHECK (amount > 0),
	CHECK (debit_account <> credit_account),
	FOREIGN KEY (debit_account, currency) REFERENCES ledger_accounts(id, currency),
	FOREIGN KEY (credit_account, currency) REFERENCES ledger_accounts(id, currency)
);
CREATE INDEX ledger_entries_tx ON ledger_entries(tx_id);
CREATE INDEX ledger_entries_debit ON ledger_entries(debit_account);
CREATE INDEX ledger_entries_credit ON ledger_entries(credit_account);
CREATE TRIGGER ledger_accounts_no_update BEFORE UPDATE ON ledger_accounts
BEGIN SELECT RAISE(ABORT, 'ledger: accounts are append-only'); END;
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
BEGIN SELECT RAISE(ABORT, 'ledger: accounts are append-only'); END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger: transactions are append-only'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger: transactions are append-only'); END;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger: entries are append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger: entries are append-only'); END;

-- Both sides of every entry, one row each: the classic debit/credit view.
CREATE VIEW ledger_postings AS
	SELECT tx_id, debit_account AS account_id, currency, amount AS debit, 0 AS credit FROM ledger_entries
	UNION ALL
	SELECT tx_id, credit_account AS account_id, currency, 0 AS debit, amount AS credit FROM ledger_entries;
CREATE VIEW ledger_balances AS
	SELECT a.id AS account_id, a.code, a.type, a.currency, a.owner_id,
		COALESCE(SUM(p.debit), 0) AS debits, COALESCE(SUM(p.credit), 0) AS credits
	FROM ledger_accounts a LEFT JOIN ledger_postings p ON p.account_id = a.id
	GROUP BY a.id, a.code, a.type, a.currency, a.owner_id;

-- Membership plans creators set, and memberships.
CREATE TABLE membership_plans (
	creator_id INTEGER PRIMARY KEY,
	amount     INTEGER NOT NULL CHECK (amount > 0),
	currency   TEXT NOT NULL CHECK (length(currency) = 3),
	updated_at INTEGER NOT NULL
);
CREATE TABLE memberships (
	id                   INTEGER PRIMARY KEY,
	member_id            INTEGER NOT NULL,
	creator_id           INTEGER NOT NULL CHECK (creator_id <> member_id),
	amount               INTEGER NOT NULL CHECK (amount > 0),
	currency             TEXT NOT NULL CHECK (length(currency) = 3),
	state                TEXT NOT NULL CHECK (state IN ('incomplete', 'active', 'past_due', 'canceled', 'incomplete_expired')),
	payment_method       TEXT NOT NULL,
	customer             TEXT NOT NULL DEFAULT '',     -- the provider's customer the renewals charge (Stripe)
	provider             TEXT NOT NULL,
	period               INTEGER NOT NULL DEFAULT 0,   -- periods paid
	period_end           INTEGER NOT NULL DEFAULT 0,
	cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
	attempts             INTEGER NOT NULL DEFAULT 0,   -- failed renewals in a row
	next_renewal_at      INTEGER NOT NULL DEFAULT 0,
	ended_reason         TEXT NOT NULL DEFAULT '',
	version              INTEGER NOT NULL DEFAULT 0,
	created_at           INTEGER NOT NULL,
	updated_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX memberships_live ON memberships(member_id, creator_id) WHERE state IN ('incomplete', 'active', 'past_due');
CREATE INDEX memberships_renewal ON memberships(state, next_renewal_at);
CREATE INDEX memberships_creator ON memberships(creator_id, id DESC);
CREATE INDEX memberships_member ON memberships(member_id, id DESC);

-- Payouts of creator balances, and where each creator is paid out to.
CREATE TABLE payouts (
	id             INTEGER PRIMARY KEY,
	creator_id     INTEGER NOT NULL,
	amount         INTEGER NOT NULL CHECK (amount > 0),
	currency       TEXT NOT NULL CHECK (length(currency) = 3),
	state          TEXT NOT NULL CHECK (state IN ('pending', 'in_transit', 'paid', 'failed')),
	provider       TEXT NOT NULL,
	provider_ref   TEXT,
	destination    TEXT NOT NULL,
	failure_reason TEXT NOT NULL DEFAULT '',
	version        INTEGER NOT NULL DEFAULT 0,
	polls          INTEGER NOT NULL DEFAULT 0,
	next_check_at  INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	UNIQUE (provider, provider_ref)
);
CREATE INDEX payouts_open ON payouts(state, next_check_at) WHERE state IN ('pending', 'in_transit');
CREATE INDEX payouts_creator ON payouts(creator_id, id DESC);
CREATE TABLE payout_accounts (
	creator_id  INTEGER NOT NULL,
	provider    TEXT NOT NULL,
	destination TEXT NOT NULL,
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (creator_id, provider)
);

-- Incoming webhooks already applied, by the provider's event ID: a
-- redelivered or replayed event is a no-op.
CREATE TABLE payment_webhook_events (
	provider    TEXT NOT NULL,
	event_id    TEXT NOT NULL,
	type        TEXT NOT NULL,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (provider, event_id)
);
CREATE INDEX payment_webhook_events_received ON payment_webhook_events(received_at);

-- Creators' webhook endpoints and the deliveries to them, written in the
-- transaction of the state change they announce.
CREATE TABLE payment_webhook_endpoints (
	id         INTEGER PRIMARY KEY,
	creator_id INTEGER NOT NULL,
	url        TEXT NOT NULL,
	secret     TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX payment_webhook_endpoints_creator ON payment_webhook_endpoints(creator_id);
CREATE TABLE payment_webhook_deliveries (
	id              INTEGER PRIMARY KEY,
	endpoint_id     INTEGER NOT NULL REFERENCES payment_webhook_endpoints(id) ON DELETE CASCADE,
	event_id        TEXT NOT NULL,
	kind            TEXT NOT NULL,
	payload         TEXT NOT NULL,
	state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	last_status     INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	delivered_at    INTEGER,
	UNIQUE (endpoint_id, event_id)
);
CREATE INDEX payment_webhook_deliveries_due ON payment_webhook_deliveries(state, next_attempt_at) WHERE state = 'pending';

-- Reconciliation runs and the drift each found.
CREATE TABLE payment_reconciliations (
	id          INTEGER PRIMARY KEY,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL,
	checked     INTEGER NOT NULL,
	drift       INTEGER NOT NULL,
	healed      INTEGER NOT NULL,
	summary     TEXT NOT NULL
);
CREATE TABLE payment_drift (
	id      INTEGER PRIMARY KEY,
	run_id  INTEGER NOT NULL REFERENCES payment_reconciliations(id) ON DELETE CASCADE,
	kind    TEXT NOT NULL,
	subject TEXT NOT NULL,
	detail  TEXT NOT NULL
);
CREATE INDEX payment_drift_run ON payment_drift(run_id);
