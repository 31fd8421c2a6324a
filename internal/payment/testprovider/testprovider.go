// Package testprovider is Blueprint's built-in payment provider for
// development and tests: a small payment service provider with real,
// persistent state, modelled on Stripe's test mode.
//
// It keeps its own SQLite database (apart from Blueprint's, as a remote
// provider would), honours idempotency keys the way Stripe does (a repeated
// key returns the stored first answer; the same key with other parameters
// is refused), accepts test cards that succeed, fail or require
// authentication, settles payments asynchronously after a delay, pays out,
// and sends signed webhooks (payment.SignatureHeader) for every change,
// retried until delivered. For chaos tests it can fail a share of calls
// temporarily, half of them after committing — the classic lost answer.
//
// No card numbers exist here: payers pick a test payment method by name,
// as Stripe's pm_card_* test tokens.
package testprovider

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/currency"
)

// Name is the provider's name.
const Name = "test"

// Test payment methods.
const (
	CardVisa              = "pm_card_visa"                            // succeeds after settlement
	CardMastercard        = "pm_card_mastercard"                      // succeeds after settlement
	CardInstant           = "pm_card_instant"                         // succeeds at once
	CardAuthRequired      = "pm_card_authenticationRequired"          // requires authentication (3-D Secure)
	CardDeclined          = "pm_card_chargeDeclined"                  // declined
	CardInsufficientFunds = "pm_card_chargeDeclinedInsufficientFunds" // declined: insufficient funds
	CardSettlementFails   = "pm_card_settlementFails"                 // accepted, fails when it settles
)

// Cards lists the test payment methods with what they do.
func Cards() []payment.TestCard {
	return []payment.TestCard{
		{PaymentMethod: CardVisa, Label: "Visa 4242 — succeeds after settlement"},
		{PaymentMethod: CardMastercard, Label: "Mastercard 4444 — succeeds after settlement"},
		{PaymentMethod: CardInstant, Label: "Visa 0077 — succeeds at once"},
		{PaymentMethod: CardAuthRequired, Label: "Visa 3155 — asks for 3-D Secure authentication"},
		{PaymentMethod: CardDeclined, Label: "Visa 0002 — declined"},
		{PaymentMethod: CardInsufficientFunds, Label: "Visa 9995 — declined, insufficient funds"},
		{PaymentMethod: CardSettlementFails, Label: "Visa 0341 — accepted, then fails to settle"},
	}
}

// Destinations starting with FailingDestination fail when paid out.
const FailingDestination = "test_bank_fail"

var destinationRE = regexp.MustCompile(`^test_bank_[a-z0-9_]{1,40}$`)

// Config configures a Provider.
type Config struct {
	// Path is the provider's SQLite database file (created).
	Path string
	// Secret signs the webhooks.
	Secret []byte
	// WebhookURL receives the webhooks; when empty, Deliver does; when
	// both are unset the provider keeps its events undelivered.
	WebhookURL string
	Deliver    func(ctx context.Context, body []byte, h http.Header) (int, error)
	// SettleDelay is how long a card payment processes.
	SettleDelay time.Duration
	// FaultRate is the share of mutating calls that fail temporarily:
	// half before doing anything, half after committing.
	FaultRate float64
	// Synchronous is SQLite's synchronous setting (default NORMAL:
	// durable across process crashes).
	Synchronous string
	// Failpoint, when set, is called with "provider_committed" after each
	// committed call and "provider_settled" after each settlement.
	Failpoint func(name string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient sends the webhooks; nil means a client with a 10 s limit.
	HTTPClient *http.Client
}

// Provider is the test payment provider. It implements payment.Provider.
type Provider struct {
	cfg    Config
	db     *sql.DB
	logger *slog.Logger
}

var _ payment.Provider = (*Provider)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS tp_requests (
	key         TEXT PRIMARY KEY,
	op          TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	response    TEXT NOT NULL,
	created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tp_payments (
	id             TEXT PRIMARY KEY,
	intent_id      INTEGER NOT NULL,
	amount         INTEGER NOT NULL CHECK (amount > 0),
	currency       TEXT NOT NULL,
	payment_method TEXT NOT NULL,
	status         TEXT NOT NULL,
	failure        TEXT NOT NULL DEFAULT '',
	settle_at      INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tp_payments_settle ON tp_payments(status, settle_at);
CREATE INDEX IF NOT EXISTS tp_payments_created ON tp_payments(created_at);
CREATE INDEX IF NOT EXISTS tp_payments_intent ON tp_payments(intent_id);
CREATE TABLE IF NOT EXISTS tp_payouts (
	id          TEXT PRIMARY KEY,
	payout_id   INTEGER NOT NULL,
	amount      INTEGER NOT NULL CHECK (amount > 0),
	currency    TEXT NOT NULL,
	destination TEXT NOT NULL,
	status      TEXT NOT NULL,
	failure     TEXT NOT NULL DEFAULT '',
	settle_at   INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tp_payouts_settle ON tp_payouts(status, settle_at);
CREATE INDEX IF NOT EXISTS tp_payouts_created ON tp_payouts(created_at);
CREATE TABLE IF NOT EXISTS tp_events (
	seq             INTEGER PRIMARY KEY,
	id              TEXT NOT NULL UNIQUE,
	type            TEXT NOT NULL,
	payload         TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	delivered_at    INTEGER,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tp_events_due ON tp_events(next_attempt_at) WHERE delivered_at IS NULL;
`

// Open opens (creating) the provider's database.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Provider, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Synchronous == "" {
		cfg.Synchronous = "NORMAL"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("testprovider: no webhook secret")
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("testprovider: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(" + cfg.Synchronous + ")"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("testprovider: open %s: %w", cfg.Path, err)
	}
	// One connection: the provider's writes are serial, and reads see
	// them at once.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("testprovider: schema: %w", err)
	}
	return &Provider{cfg: cfg, db: db, logger: logger}, nil
}

// Close closes the database.
func (p *Provider) Close() error { return p.db.Close() }

// DB returns the provider's database, for tests that check its state.
func (p *Provider) DB() *sql.DB { return p.db }

// Name implements payment.Provider.
func (p *Provider) Name() string { return Name }

// Client implements payment.Provider.
func (p *Provider) Client() payment.ClientInfo {
	return payment.ClientInfo{Provider: Name, TestCards: Cards()}
}

// CheckPaymentMethod implements payment.Provider.
func (p *Provider) CheckPaymentMethod(pm string) error {
	if pm == "" {
		return errs.E(errs.Invalid, "payment_method is required: one of the test provider's cards, e.g. %s", CardVisa)
	}
	for _, c := range Cards() {
		if c.PaymentMethod == pm {
			return nil
		}
	}
	return errs.E(errs.Invalid, "payment_method %q is not one of the test provider's cards", truncate(pm, 64))
}

// CheckDestination implements payment.Provider.
func (p *Provider) CheckDestination(dest string) error {
	if !destinationRE.MatchString(dest) {
		return errs.E(errs.Invalid, "destination must look like test_bank_<lowercase letters, digits, _>")
	}
	return nil
}

// DefaultDestination implements payment.Provider: every creator has a
// test bank account.
func (p *Provider) DefaultDestination(creator int64) string {
	return "test_bank_" + strconv.FormatInt(creator, 10)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func newID(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func (p *Provider) now() time.Time { return p.cfg.Now() }

func (p *Provider) failpoint(name string) {
	if p.cfg.Failpoint != nil {
		p.cfg.Failpoint(name)
	}
}

// fault reports whether this call should fail temporarily at this point
// (before or after committing).
func (p *Provider) fault() bool {
	return p.cfg.FaultRate > 0 && mrand.Float64() < p.cfg.FaultRate/2
}

var errUnavailable = &payment.ProviderError{Code: "unavailable", Message: "test provider: injected temporary failure", Temporary: true}

// idempotent runs a mutating call under key: a repeated key with the same
// fingerprint returns the stored answer; with another, an error. do runs
// in the transaction and returns the answer to store.
func (p *Provider) idempotent(ctx context.Context, key, op, fp string, out any, do func(tx *sql.Tx) (any, error)) error {
	if key == "" || len(key) > 255 {
		return &payment.ProviderError{Code: "invalid_request", Message: "idempotency key required"}
	}
	if p.fault() {
		return errUnavailable
	}
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	defer tx.Rollback()
	var gotOp, gotFP, resp string
	err = tx.QueryRowContext(ctx, `SELECT op, fingerprint, response FROM tp_requests WHERE key = ?`, key).Scan(&gotOp, &gotFP, &resp)
	switch {
	case err == nil:
		if gotOp != op || gotFP != fp {
			return &payment.ProviderError{Code: "idempotency_conflict", Message: "key " + key + " was used with other parameters"}
		}
		return json.Unmarshal([]byte(resp), out)
	case !errors.Is(err, sql.ErrNoRows):
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	v, err := do(tx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tp_requests(key, op, fingerprint, response, created_at) VALUES (?, ?, ?, ?, ?)`,
		key, op, fp, string(b), p.now().UnixMilli()); err != nil {
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	if err := tx.Commit(); err != nil {
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	p.failpoint("provider_committed")
	if p.fault() {
		return errUnavailable // committed, answer lost
	}
	return json.Unmarshal(b, out)
}

// chargeJSON is a payment as stored answers and webhooks carry it.
type chargeJSON struct {
	Object        string        `json:"object"`
	ID            string        `json:"id"`
	IntentID      string        `json:"intent_id"`
	Status        payment.State `json:"status"`
	Amount        int64         `json:"amount"`
	Currency      string        `json:"currency"`
	PaymentMethod string        `json:"payment_method"`
	NextAction    string        `json:"next_action,omitempty"`
	FailureReason string        `json:"failure_reason,omitempty"`
	Created       int64         `json:"created"`
}

func (c chargeJSON) charge() payment.Charge {
	id, _ := strconv.ParseInt(c.IntentID, 10, 64)
	return payment.Charge{Ref: c.ID, IntentID: id, Status: c.Status, Amount: c.Amount, Currency: c.Currency,
		NextAction: c.NextAction, FailureReason: c.FailureReason, Created: time.Unix(c.Created, 0).UTC()}
}

type payoutJSON struct {
	Object        string              `json:"object"`
	ID            string              `json:"id"`
	PayoutID      string              `json:"payout_id"`
	Status        payment.PayoutState `json:"status"`
	Amount        int64               `json:"amount"`
	Currency      string              `json:"currency"`
	Destination   string              `json:"destination"`
	FailureReason string              `json:"failure_reason,omitempty"`
	Created       int64               `json:"created"`
}

func (o payoutJSON) payout() payment.ProviderPayout {
	id, _ := strconv.ParseInt(o.PayoutID, 10, 64)
	return payment.ProviderPayout{Ref: o.ID, PayoutID: id, Status: o.Status, Amount: o.Amount, Currency: o.Currency,
		FailureReason: o.FailureReason, Created: time.Unix(o.Created, 0).UTC()}
}

const chargeCols = `id, intent_id, amount, currency, payment_method, status, failure, created_at`

func scanCharge(sc interface{ Scan(...any) error }) (chargeJSON, error) {
	c := chargeJSON{Object: "payment"}
	var intent, created int64
	err := sc.Scan(&c.ID, &intent, &c.Amount, &c.Currency, &c.PaymentMethod, &c.Status, &c.FailureReason, &created)
	c.IntentID, c.Created = strconv.FormatInt(intent, 10), created/1000
	if c.Status == payment.RequiresAction {
		c.NextAction = "authenticate"
	}
	return c, err
}

func (p *Provider) loadCharge(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, ref string) (chargeJSON, error) {
	c, err := scanCharge(q.QueryRowContext(ctx, `SELECT `+chargeCols+` FROM tp_payments WHERE id = ?`, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return c, &payment.ProviderError{Code: "resource_missing", Message: "no such payment " + truncate(ref, 64)}
	}
	if err != nil {
		return c, &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	return c, nil
}

// event records a webhook event in tx.
func (p *Provider) event(ctx context.Context, tx *sql.Tx, typ string, data any) error {
	id := newID("evt_")
	now := p.now()
	b, err := json.Marshal(map[string]any{"id": id, "type": typ, "created": now.Unix(), "data": data})
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO tp_events(id, type, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)`,
		id, typ, string(b), now.UnixMilli(), now.UnixMilli())
	return err
}

// Charge implements payment.Provider.
func (p *Provider) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	var out chargeJSON
	fp := fmt.Sprintf("%d|%d|%s|%s|%t", req.IntentID, req.Amount, req.Currency, req.PaymentMethod, req.OffSession)
	err := p.idempotent(ctx, req.Key, "charge", fp, &out, func(tx *sql.Tx) (any, error) {
		if req.Amount <= 0 || !currency.Valid(req.Currency) {
			return nil, &payment.ProviderError{Code: "invalid_request", Message: "bad amount or currency"}
		}
		if err := p.CheckPaymentMethod(req.PaymentMethod); err != nil {
			return nil, &payment.ProviderError{Code: "invalid_request", Message: errs.Message(err)}
		}
		now := p.now()
		c := chargeJSON{Object: "payment", ID: newID("tp_pi_"), IntentID: strconv.FormatInt(req.IntentID, 10), Amount: req.Amount,
			Currency: req.Currency, PaymentMethod: req.PaymentMethod, Created: now.Unix()}
		var settleAt int64
		switch req.PaymentMethod {
		case CardInstant:
			c.Status = payment.Succeeded
		case CardAuthRequired:
			if req.OffSession {
				c.Status, c.FailureReason = payment.Failed, "authentication_required"
			} else {
				c.Status, c.NextAction = payment.RequiresAction, "authenticate"
			}
		case CardDeclined:
			c.Status, c.FailureReason = payment.Failed, "card_declined"
		case CardInsufficientFunds:
			c.Status, c.FailureReason = payment.Failed, "insufficient_funds"
		default:
			c.Status, settleAt = payment.Processing, now.Add(p.cfg.SettleDelay).UnixMilli()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tp_payments(id, intent_id, amount, currency, payment_method, status, failure, settle_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, req.IntentID, c.Amount, c.Currency, c.PaymentMethod, c.Status, c.FailureReason,
			settleAt, now.UnixMilli(), now.UnixMilli()); err != nil {
			return nil, err
		}
		return c, p.event(ctx, tx, "payment."+string(c.Status), c)
	})
	if err != nil {
		return payment.Charge{}, err
	}
	return out.charge(), nil
}

// GetCharge implements payment.Provider.
func (p *Provider) GetCharge(ctx context.Context, ref string) (payment.Charge, error) {
	c, err := p.loadCharge(ctx, p.db, ref)
	if err != nil {
		return payment.Charge{}, err
	}
	return c.charge(), nil
}

// CompleteAction implements payment.Provider: approve is the payer's
// answer to the simulated 3-D Secure challenge.
func (p *Provider) CompleteAction(ctx context.Context, ref, key string, approve bool, pm string) (payment.Charge, error) {
	var out chargeJSON
	err := p.idempotent(ctx, key, "complete_action", fmt.Sprintf("%s|%t", ref, approve), &out, func(tx *sql.Tx) (any, error) {
		c, err := p.loadCharge(ctx, tx, ref)
		if err != nil {
			return nil, err
		}
		if c.Status != payment.RequiresAction {
			return c, nil
		}
		now := p.now()
		var settleAt int64
		c.NextAction = ""
		if approve {
			c.Status, settleAt = payment.Processing, now.Add(p.cfg.SettleDelay).UnixMilli()
		} else {
			c.Status, c.FailureReason = payment.Failed, "authentication_failed"
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tp_payments SET status = ?, failure = ?, settle_at = ?, updated_at = ? WHERE id = ?`,
			c.Status, c.FailureReason, settleAt, now.UnixMilli(), ref); err != nil {
			return nil, err
		}
		return c, p.event(ctx, tx, "payment."+string(c.Status), c)
	})
	if err != nil {
		return payment.Charge{}, err
	}
	return out.charge(), nil
}

// CancelCharge implements payment.Provider.
func (p *Provider) CancelCharge(ctx context.Context, ref, key string) (payment.Charge, error) {
	var out chargeJSON
	err := p.idempotent(ctx, key, "cancel", ref, &out, func(tx *sql.Tx) (any, error) {
		c, err := p.loadCharge(ctx, tx, ref)
		if err != nil {
			return nil, err
		}
		switch c.Status {
		case payment.Canceled:
			return c, nil
		case payment.RequiresAction:
		default:
			return nil, &payment.ProviderError{Code: "payment_intent_unexpected_state", Message: "a payment that is " + string(c.Status) + " cannot be canceled"}
		}
		c.Status, c.NextAction = payment.Canceled, ""
		if _, err := tx.ExecContext(ctx, `UPDATE tp_payments SET status = ?, updated_at = ? WHERE id = ?`, c.Status, p.now().UnixMilli(), ref); err != nil {
			return nil, err
		}
		return c, p.event(ctx, tx, "payment.canceled", c)
	})
	if err != nil {
		return payment.Charge{}, err
	}
	return out.charge(), nil
}

// ListCharges implements payment.Provider.
func (p *Provider) ListCharges(ctx context.Context, since time.Time, fn func(payment.Charge) error) error {
	rows, err := p.db.QueryContext(ctx, `SELECT `+chargeCols+` FROM tp_payments WHERE created_at >= ? ORDER BY created_at, id`, since.UnixMilli())
	if err != nil {
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	var list []chargeJSON
	for rows.Next() {
		c, err := scanCharge(rows)
		if err != nil {
			rows.Close()
			return err
		}
		list = append(list, c)
	}
	rows.Close()
	for _, c := range list {
		if err := fn(c.charge()); err != nil {
			return err
		}
	}
	return rows.Err()
}

const payoutCols = `id, payout_id, amount, currency, destination, status, failure, created_at`

func scanPayout(sc interface{ Scan(...any) error }) (payoutJSON, error) {
	o := payoutJSON{Object: "payout"}
	var pid, created int64
	err := sc.Scan(&o.ID, &pid, &o.Amount, &o.Currency, &o.Destination, &o.Status, &o.FailureReason, &created)
	o.PayoutID, o.Created = strconv.FormatInt(pid, 10), created/1000
	return o, err
}

// Balance returns the provider's available balance in cur: succeeded
// payments minus payouts not failed.
func (p *Provider) Balance(ctx context.Context, cur string) (int64, error) {
	return p.balance(ctx, p.db, cur)
}

func (p *Provider) balance(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, cur string) (int64, error) {
	var in, out int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE((SELECT SUM(amount) FROM tp_payments WHERE currency = ? AND status = 'succeeded'), 0),
		COALESCE((SELECT SUM(amount) FROM tp_payouts WHERE currency = ? AND status <> 'failed'), 0)`, cur, cur).Scan(&in, &out)
	return in - out, err
}

// Payout implements payment.Provider. A payout above the available balance
// fails, as at a real provider.
func (p *Provider) Payout(ctx context.Context, req payment.PayoutRequest) (payment.ProviderPayout, error) {
	var out payoutJSON
	fp := fmt.Sprintf("%d|%d|%s|%s", req.PayoutID, req.Amount, req.Currency, req.Destination)
	err := p.idempotent(ctx, req.Key, "payout", fp, &out, func(tx *sql.Tx) (any, error) {
		if req.Amount <= 0 || !currency.Valid(req.Currency) || p.CheckDestination(req.Destination) != nil {
			return nil, &payment.ProviderError{Code: "invalid_request", Message: "bad amount, currency or destination"}
		}
		now := p.now()
		o := payoutJSON{Object: "payout", ID: newID("tp_po_"), PayoutID: strconv.FormatInt(req.PayoutID, 10), Amount: req.Amount,
			Currency: req.Currency, Destination: req.Destination, Status: payment.PayoutInTransit, Created: now.Unix()}
		bal, err := p.balance(ctx, tx, req.Currency)
		if err != nil {
			return nil, err
		}
		if bal < req.Amount {
			o.Status, o.FailureReason = payment.PayoutFailed, "insufficient_funds"
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tp_payouts(id, payout_id, amount, currency, destination, status, failure, settle_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, req.PayoutID, o.Amount, o.Currency, o.Destination, o.Status, o.FailureReason,
			now.Add(p.cfg.SettleDelay).UnixMilli(), now.UnixMilli(), now.UnixMilli()); err != nil {
			return nil, err
		}
		return o, p.event(ctx, tx, "payout."+string(o.Status), o)
	})
	if err != nil {
		return payment.ProviderPayout{}, err
	}
	return out.payout(), nil
}

// GetPayout implements payment.Provider.
func (p *Provider) GetPayout(ctx context.Context, ref string) (payment.ProviderPayout, error) {
	o, err := scanPayout(p.db.QueryRowContext(ctx, `SELECT `+payoutCols+` FROM tp_payouts WHERE id = ?`, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return payment.ProviderPayout{}, &payment.ProviderError{Code: "resource_missing", Message: "no such payout"}
	}
	if err != nil {
		return payment.ProviderPayout{}, &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	return o.payout(), nil
}

// ListPayouts implements payment.Provider.
func (p *Provider) ListPayouts(ctx context.Context, since time.Time, fn func(payment.ProviderPayout) error) error {
	rows, err := p.db.QueryContext(ctx, `SELECT `+payoutCols+` FROM tp_payouts WHERE created_at >= ? ORDER BY created_at, id`, since.UnixMilli())
	if err != nil {
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	var list []payoutJSON
	for rows.Next() {
		o, err := scanPayout(rows)
		if err != nil {
			rows.Close()
			return err
		}
		list = append(list, o)
	}
	rows.Close()
	for _, o := range list {
		if err := fn(o.payout()); err != nil {
			return err
		}
	}
	return rows.Err()
}

// webhookJSON is a webhook body.
type webhookJSON struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Created int64           `json:"created"`
	Data    json.RawMessage `json:"data"`
}

// ParseWebhook implements payment.Provider.
func (p *Provider) ParseWebhook(payload []byte, h http.Header, now time.Time, tolerance time.Duration) (payment.Event, error) {
	return ParseWebhook(p.cfg.Secret, payload, h, now, tolerance)
}

// ParseWebhook verifies and decodes a test provider webhook signed with
// secret.
func ParseWebhook(secret, payload []byte, h http.Header, now time.Time, tolerance time.Duration) (payment.Event, error) {
	if _, err := payment.Verify(secret, h.Get(payment.SignatureHeader), payload, now, tolerance); err != nil {
		return payment.Event{}, err
	}
	var w webhookJSON
	if err := json.Unmarshal(payload, &w); err != nil || w.ID == "" || len(w.ID) > 64 || w.Type == "" || len(w.Type) > 64 {
		return payment.Event{}, errs.E(errs.Invalid, "webhook body is not a test provider event")
	}
	ev := payment.Event{ID: w.ID, Type: w.Type, Created: time.Unix(w.Created, 0).UTC()}
	switch {
	case strings.HasPrefix(w.Type, "payment."):
		var c chargeJSON
		if err := json.Unmarshal(w.Data, &c); err != nil || c.ID == "" || c.Object != "payment" {
			return payment.Event{}, errs.E(errs.Invalid, "webhook data is not a payment")
		}
		ch := c.charge()
		ev.Charge = &ch
	case strings.HasPrefix(w.Type, "payout."):
		var o payoutJSON
		if err := json.Unmarshal(w.Data, &o); err != nil || o.ID == "" || o.Object != "payout" {
			return payment.Event{}, errs.E(errs.Invalid, "webhook data is not a payout")
		}
		po := o.payout()
		ev.Payout = &po
	}
	return ev, nil
}

// Run settles due payments and payouts and delivers webhooks until ctx
// ends.
func (p *Provider) Run(ctx context.Context) {
	tick := min(max(p.cfg.SettleDelay/4, 10*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if _, err := p.SettleDue(ctx); err != nil && ctx.Err() == nil {
			p.logger.Warn("testprovider: settle", "err", err)
		}
		if _, err := p.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			p.logger.Debug("testprovider: deliver", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SettleDue settles the payments and payouts whose time has come and
// returns how many.
func (p *Provider) SettleDue(ctx context.Context) (int, error) {
	now := p.now().UnixMilli()
	rows, err := p.db.QueryContext(ctx, `SELECT id FROM tp_payments WHERE status = 'processing' AND settle_at <= ? ORDER BY settle_at LIMIT 500`, now)
	if err != nil {
		return 0, err
	}
	var pays []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		pays = append(pays, id)
	}
	rows.Close()
	rows, err = p.db.QueryContext(ctx, `SELECT id FROM tp_payouts WHERE status = 'in_transit' AND settle_at <= ? ORDER BY settle_at LIMIT 500`, now)
	if err != nil {
		return 0, err
	}
	var outs []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		outs = append(outs, id)
	}
	rows.Close()
	n := 0
	for _, id := range pays {
		err := p.inTx(ctx, func(tx *sql.Tx) error {
			c, err := p.loadCharge(ctx, tx, id)
			if err != nil || c.Status != payment.Processing {
				return err
			}
			c.Status = payment.Succeeded
			if c.PaymentMethod == CardSettlementFails {
				c.Status, c.FailureReason = payment.Failed, "settlement_failed"
			}
			if _, err := tx.ExecContext(ctx, `UPDATE tp_payments SET status = ?, failure = ?, updated_at = ? WHERE id = ?`,
				c.Status, c.FailureReason, p.now().UnixMilli(), id); err != nil {
				return err
			}
			return p.event(ctx, tx, "payment."+string(c.Status), c)
		})
		if err != nil {
			return n, err
		}
		n++
		p.failpoint("provider_settled")
	}
	for _, id := range outs {
		err := p.inTx(ctx, func(tx *sql.Tx) error {
			o, err := scanPayout(tx.QueryRowContext(ctx, `SELECT `+payoutCols+` FROM tp_payouts WHERE id = ?`, id))
			if err != nil || o.Status != payment.PayoutInTransit {
				return err
			}
			o.Status = payment.PayoutPaid
			if strings.HasPrefix(o.Destination, FailingDestination) {
				o.Status, o.FailureReason = payment.PayoutFailed, "account_closed"
			}
			if _, err := tx.ExecContext(ctx, `UPDATE tp_payouts SET status = ?, failure = ?, updated_at = ? WHERE id = ?`,
				o.Status, o.FailureReason, p.now().UnixMilli(), id); err != nil {
				return err
			}
			return p.event(ctx, tx, "payout."+string(o.Status), o)
		})
		if err != nil {
			return n, err
		}
		n++
		p.failpoint("provider_settled")
	}
	return n, nil
}

func (p *Provider) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// DeliverDue sends the webhooks that are due, oldest first, and returns how
// many were delivered. A failed delivery is retried with backoff (100 ms
// doubling to 10 s; Stripe's schedule runs for days, too slow for tests),
// without holding back later events: receivers must cope with any order,
// as with Stripe.
func (p *Provider) DeliverDue(ctx context.Context) (int, error) {
	if p.cfg.WebhookURL == "" && p.cfg.Deliver == nil {
		return 0, nil
	}
	rows, err := p.db.QueryContext(ctx, `SELECT seq, payload, attempts FROM tp_events WHERE delivered_at IS NULL AND next_attempt_at <= ?
		ORDER BY seq LIMIT 100`, p.now().UnixMilli())
	if err != nil {
		return 0, err
	}
	type due struct {
		seq      int64
		payload  string
		attempts int64
	}
	var list []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.seq, &d.payload, &d.attempts); err != nil {
			rows.Close()
			return 0, err
		}
		list = append(list, d)
	}
	rows.Close()
	n := 0
	var lastErr error
	for _, d := range list {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		err := p.send(ctx, []byte(d.payload))
		now := p.now()
		if err == nil {
			n++
			_, err = p.db.ExecContext(ctx, `UPDATE tp_events SET delivered_at = ?, attempts = attempts + 1 WHERE seq = ?`, now.UnixMilli(), d.seq)
			if err != nil {
				return n, err
			}
			continue
		}
		lastErr = err
		wait := min(100*time.Millisecond<<min(d.attempts, 10), 10*time.Second)
		if _, err := p.db.ExecContext(ctx, `UPDATE tp_events SET attempts = attempts + 1, next_attempt_at = ? WHERE seq = ?`,
			now.Add(wait).UnixMilli(), d.seq); err != nil {
			return n, err
		}
	}
	return n, lastErr
}

func (p *Provider) send(ctx context.Context, body []byte) error {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(payment.SignatureHeader, payment.Sign(p.cfg.Secret, p.now(), body))
	if p.cfg.Deliver != nil && p.cfg.WebhookURL == "" {
		code, err := p.cfg.Deliver(ctx, body, h)
		if err == nil && code/100 != 2 {
			err = fmt.Errorf("testprovider: webhook answered %d", code)
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.WebhookURL, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header = h
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("testprovider: webhook answered %d", resp.StatusCode)
	}
	return nil
}
