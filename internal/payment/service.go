// Package payment lets viewers tip creators and subscribe to monthly
// memberships, and lets creators see their balances and take payouts.
//
// The parts, each in its own file: payment intents with an explicit state
// machine (intent.go); idempotency keys on every mutating call with the
// first response stored and replayed (idempotency.go); a double-entry
// ledger in the SQL store whose balance the schema enforces (ledger.go);
// providers behind one interface (provider.go; the built-in test provider
// in package testprovider, Stripe in package stripeprovider); signed
// webhooks in (webhook_in.go) and out to creators' endpoints
// (webhook_out.go); memberships and their renewals (membership.go);
// payouts (payout.go); reconciliation of the ledger with the provider
// (reconcile.go); the background jobs that drive everything interrupted to
// a final state (jobs.go); and the HTTP API and pages (http.go, admin.go).
//
// The one rule everything follows: a record is written before the
// provider is called, the provider is called with an idempotency key
// derived from that record, and the provider's answer is applied with a
// compare-and-set on the record's state in one transaction together with
// its ledger entries, outbox events and the stored response. A crash
// anywhere leaves a record that a retry or the background job finishes by
// repeating the same idempotent call.
package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/payment/currency"
)

// Config configures a Service. Amounts are in minor units.
type Config struct {
	Currencies           []string
	DefaultCurrency      string
	MinAmount            int64
	MaxAmount            int64
	DailyLimit           int64
	FeeBasisPoints       int64
	MembershipPrice      int64
	MembershipPeriod     time.Duration
	MembershipRetry      time.Duration
	MembershipMaxRetries int
	PayoutMin            int64
	ActionTimeout        time.Duration
	RecoveryAfter        time.Duration
	PollInterval         time.Duration
	ReconcileInterval    time.Duration
	ReconcileWindow      time.Duration
	IdempotencyTTL       time.Duration
	WebhookTolerance     time.Duration
	WebhookMaxAttempts   int
	WebhookTimeout       time.Duration
	WebhookAllowPrivate  bool
	MaxWebhookEndpoints  int

	// Users answers whether a user exists and resolves usernames; nil
	// accepts every positive ID and no usernames.
	Users Users
	// Failpoint, when set, is called with the name of each step of the
	// payment path as it is passed (tests kill the process there).
	Failpoint func(name string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults of the configuration file's payment
// section.
func DefaultConfig() Config {
	return Config{
		Currencies: []string{"USD", "EUR", "GBP", "JPY"}, DefaultCurrency: "USD",
		MinAmount: 50, MaxAmount: 100_000, DailyLimit: 500_000, FeeBasisPoints: 500,
		MembershipPrice: 500, MembershipPeriod: 30 * 24 * time.Hour, MembershipRetry: 24 * time.Hour, MembershipMaxRetries: 3,
		PayoutMin: 1_000, ActionTimeout: time.Hour, RecoveryAfter: 10 * time.Second, PollInterval: 30 * time.Second,
		ReconcileInterval: time.Hour, ReconcileWindow: 7 * 24 * time.Hour, IdempotencyTTL: 72 * time.Hour,
		WebhookTolerance: 5 * time.Minute, WebhookMaxAttempts: 12, WebhookTimeout: 10 * time.Second, MaxWebhookEndpoints: 5,
	}
}

// Users is the account directory the service checks payees against.
type Users interface {
	// Exists reports whether user id exists.
	Exists(ctx context.Context, id int64) (bool, error)
	// Lookup returns the ID of the user called username, or 0.
	Lookup(ctx context.Context, username string) (int64, error)
}

// IDs issues row IDs (an *idgen.Generator).
type IDs interface {
	Next(shard int) (int64, error)
}

// Service is the payment service.
type Service struct {
	cfg      Config
	db       *DB
	provider Provider
	ids      IDs
	ledger   *Ledger
	logger   *slog.Logger
	m        *metrics
	hooks    *http.Client // outgoing webhooks
}

// New returns a Service on db with provider; reg may be nil.
func New(cfg Config, db *DB, provider Provider, ids IDs, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Currencies) == 0 {
		return nil, errors.New("payment: no currencies configured")
	}
	for _, c := range cfg.Currencies {
		if !currency.Valid(c) {
			return nil, fmt.Errorf("payment: %q is not an ISO 4217 currency", c)
		}
	}
	if cfg.MinAmount < 1 || cfg.MaxAmount < cfg.MinAmount || cfg.FeeBasisPoints < 0 || cfg.FeeBasisPoints >= 10_000 {
		return nil, errors.New("payment: amounts or fee out of range")
	}
	s := &Service{cfg: cfg, db: db, provider: provider, ids: ids, logger: logger, m: newMetrics()}
	s.ledger = &Ledger{db: db, now: cfg.Now}
	s.hooks = newHookClient(cfg.WebhookTimeout, cfg.WebhookAllowPrivate)
	if reg != nil {
		if err := s.m.register(reg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Ledger returns the service's ledger.
func (s *Service) Ledger() *Ledger { return s.ledger }

// Provider returns the service's provider.
func (s *Service) Provider() Provider { return s.provider }

func (s *Service) now() time.Time { return s.cfg.Now() }

func (s *Service) failpoint(name string) {
	if s.cfg.Failpoint != nil {
		s.cfg.Failpoint(name)
	}
}

func (s *Service) newID(shardOf int64) (int64, error) {
	id, err := s.ids.Next(idgen.Shard(shardOf))
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "cannot issue an ID right now; retry")
	}
	return id, nil
}

// ---- validation ----

// checkMoney validates an amount and currency against the configuration.
func (s *Service) checkMoney(amount int64, cur string) error {
	if !currency.Valid(cur) {
		return errs.E(errs.Invalid, "currency %q is not an ISO 4217 code (upper case, e.g. USD)", cur)
	}
	if !slices.Contains(s.cfg.Currencies, cur) {
		return errs.E(errs.Invalid, "currency %s is not accepted here (accepted: %s)", cur, strings.Join(s.cfg.Currencies, ", "))
	}
	if amount < s.cfg.MinAmount {
		return errs.E(errs.Invalid, "amount must be at least %d minor units (%s)", s.cfg.MinAmount, currency.Format(s.cfg.MinAmount, cur))
	}
	if amount > s.cfg.MaxAmount {
		return errs.E(errs.Invalid, "amount must be at most %d minor units (%s) per payment", s.cfg.MaxAmount, currency.Format(s.cfg.MaxAmount, cur))
	}
	return nil
}

func parseID(field, v string) (int64, error) {
	id, err := idgen.Parse(v)
	if err != nil || id <= 0 {
		return 0, errs.E(errs.Invalid, "%s must be an ID (a decimal string)", field)
	}
	return id, nil
}

// checkUser reports a NotFound error when id is not an existing user.
func (s *Service) checkUser(ctx context.Context, id int64, what string) error {
	if s.cfg.Users == nil {
		return nil
	}
	ok, err := s.cfg.Users.Exists(ctx, id)
	if err != nil {
		return fmt.Errorf("payment: look up %s: %w", what, err)
	}
	if !ok {
		return errs.E(errs.NotFound, "no such %s", what)
	}
	return nil
}

func (s *Service) fee(amount int64) int64 { return amount * s.cfg.FeeBasisPoints / 10_000 }

func unixDay(t time.Time) int64 { return t.UTC().Unix() / 86400 }

// reserveDaily adds amount to the payer's total for day and currency,
// refusing when it would pass the daily limit.
func (s *Service) reserveDaily(ctx context.Context, tx *sql.Tx, payer, day int64, cur string, amount int64) error {
	if _, err := s.db.exec(ctx, tx, `INSERT INTO payment_daily_totals(payer_id, day, currency, amount) VALUES (?, ?, ?, 0)
		ON CONFLICT (payer_id, day, currency) DO NOTHING`, payer, day, cur); err != nil {
		return fmt.Errorf("payment: daily total: %w", err)
	}
	res, err := s.db.exec(ctx, tx, `UPDATE payment_daily_totals SET amount = amount + ? WHERE payer_id = ? AND day = ? AND currency = ? AND amount + ? <= ?`,
		amount, payer, day, cur, amount, s.cfg.DailyLimit)
	if err != nil {
		return fmt.Errorf("payment: daily total: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errs.E(errs.Invalid, "this payment would pass your daily limit of %s; try again tomorrow", currency.Format(s.cfg.DailyLimit, cur))
	}
	return nil
}

// releaseDaily gives back a failed or canceled payment's share of the limit.
func (s *Service) releaseDaily(ctx context.Context, tx *sql.Tx, it Intent) error {
	_, err := s.db.exec(ctx, tx, `UPDATE payment_daily_totals SET amount = CASE WHEN amount >= ? THEN amount - ? ELSE 0 END
		WHERE payer_id = ? AND day = ? AND currency = ?`, it.Amount, it.Amount, it.PayerID, it.Day, it.Currency)
	if err != nil {
		return fmt.Errorf("payment: daily total: %w", err)
	}
	return nil
}

// ---- tips ----

// TipRequest is the body of POST /api/v1/tips. The creator is named by
// ID, by username, or by one of their videos.
type TipRequest struct {
	CreatorID       string `json:"creator_id,omitempty"`
	CreatorUsername string `json:"creator_username,omitempty"`
	VideoID         string `json:"video_id,omitempty"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	PaymentMethod   string `json:"payment_method,omitempty"`
	Message         string `json:"message,omitempty"`
}

// MaxMessageLength bounds a tip's message, in characters.
const MaxMessageLength = 280

// VideoOwners resolves a video to its owner (media.Service adapter).
type VideoOwners interface {
	VideoOwner(ctx context.Context, id int64) (int64, error)
}

// Tip pays a creator once. key is the caller's idempotency key.
func (s *Service) Tip(ctx context.Context, payer int64, key string, req TipRequest, videos VideoOwners) (Reply, error) {
	if payer <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in to pay")
	}
	if err := CheckKey(key); err != nil {
		return Reply{}, err
	}
	req.Currency = strings.TrimSpace(req.Currency)
	if err := s.checkMoney(req.Amount, req.Currency); err != nil {
		return Reply{}, err
	}
	if !utf8.ValidString(req.Message) || utf8.RuneCountInString(req.Message) > MaxMessageLength {
		return Reply{}, errs.E(errs.Invalid, "message must be valid text of at most %d characters", MaxMessageLength)
	}
	if err := s.provider.CheckPaymentMethod(req.PaymentMethod); err != nil {
		return Reply{}, err
	}
	creator, video, err := s.resolveCreator(ctx, req, videos)
	if err != nil {
		return Reply{}, err
	}
	if creator == payer {
		return Reply{}, errs.E(errs.Invalid, "you cannot tip yourself")
	}
	fp := Fingerprint("tip", req)
	c, err := s.claimKey(ctx, payer, key, "tip", fp, func(tx *sql.Tx) (int64, error) {
		id, err := s.newID(payer)
		if err != nil {
			return 0, err
		}
		now := s.now()
		it := Intent{
			ID: id, Kind: KindTip, PayerID: payer, CreatorID: creator, VideoID: video, Attempt: 1,
			Amount: req.Amount, Fee: s.fee(req.Amount), Currency: req.Currency, Message: req.Message, PaymentMethod: req.PaymentMethod,
			State: Pending, Provider: s.provider.Name(), Day: unixDay(now),
			NextCheckAt: now.Add(s.cfg.RecoveryAfter), CreatedAt: now, UpdatedAt: now,
		}
		if err := s.reserveDaily(ctx, tx, payer, it.Day, it.Currency, it.Amount); err != nil {
			return 0, err
		}
		if err := s.insertIntent(ctx, tx, it); err != nil {
			return 0, err
		}
		return id, s.emitIntent(ctx, tx, "payment.created", it, false)
	})
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	s.failpoint("claimed")
	it, err := s.intent(ctx, nil, c.resourceID)
	if err != nil {
		return Reply{}, err
	}
	return s.driveAndSeal(ctx, it, &sealer{user: payer, key: key, status: http.StatusCreated, body: func(ctx context.Context, tx *sql.Tx, it Intent) (any, error) {
		return it.view(payer), nil
	}})
}

func (s *Service) resolveCreator(ctx context.Context, req TipRequest, videos VideoOwners) (creator, video int64, err error) {
	n := 0
	for _, v := range []string{req.CreatorID, req.CreatorUsername, req.VideoID} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return 0, 0, errs.E(errs.Invalid, "name the creator with exactly one of creator_id, creator_username, video_id")
	}
	switch {
	case req.CreatorID != "":
		if creator, err = parseID("creator_id", req.CreatorID); err != nil {
			return 0, 0, err
		}
		return creator, 0, s.checkUser(ctx, creator, "creator")
	case req.CreatorUsername != "":
		if s.cfg.Users == nil || len(req.CreatorUsername) > 64 {
			return 0, 0, errs.E(errs.NotFound, "no such creator")
		}
		creator, err = s.cfg.Users.Lookup(ctx, req.CreatorUsername)
		if err != nil {
			return 0, 0, fmt.Errorf("payment: look up creator: %w", err)
		}
		if creator == 0 {
			return 0, 0, errs.E(errs.NotFound, "no creator called %q", req.CreatorUsername)
		}
		return creator, 0, nil
	default:
		if video, err = parseID("video_id", req.VideoID); err != nil {
			return 0, 0, err
		}
		if videos == nil {
			return 0, 0, errs.E(errs.NotFound, "no such video")
		}
		creator, err = videos.VideoOwner(ctx, video)
		if err != nil {
			return 0, 0, err
		}
		return creator, video, nil
	}
}

// sealer stores the response of the request that drives an intent, in the
// transaction that applies the provider's answer.
type sealer struct {
	user   int64
	key    string
	status int
	body   func(ctx context.Context, tx *sql.Tx, it Intent) (any, error)
	reply  Reply
}

// driveAndSeal drives it and returns the stored response.
func (s *Service) driveAndSeal(ctx context.Context, it Intent, sl *sealer) (Reply, error) {
	if _, err := s.drive(ctx, it, sl); err != nil {
		return Reply{}, err
	}
	return sl.reply, nil
}

// chargeKey is the provider idempotency key of an intent.
func chargeKey(id int64) string { return "bp-pi-" + strconv.FormatInt(id, 10) }

// drive moves a pending intent forward by calling the provider with the
// intent's idempotency key and applying the answer; an intent past
// pending is only sealed. A temporary provider failure leaves the intent
// pending (the caller may retry; the background job will) and returns an
// Unavailable error.
func (s *Service) drive(ctx context.Context, it Intent, sl *sealer) (Intent, error) {
	if it.State != Pending || it.Provider != s.provider.Name() {
		if sl == nil {
			return it, nil
		}
		return s.apply(ctx, it.ID, nil, sl)
	}
	start := time.Now()
	req := ChargeRequest{
		Key: chargeKey(it.ID), IntentID: it.ID, Amount: it.Amount, Currency: it.Currency, PaymentMethod: it.PaymentMethod,
		Description: it.Kind,
	}
	if it.Kind == KindMembership {
		req.SaveForRenewal = it.Period == 1
		if it.Period > 1 {
			req.OffSession = true
			if err := s.db.queryRow(ctx, nil, `SELECT customer FROM memberships WHERE id = ?`, it.MembershipID).Scan(&req.Customer); err != nil {
				return it, fmt.Errorf("payment: membership of %d: %w", it.ID, err)
			}
		}
	}
	ch, err := s.provider.Charge(ctx, req)
	s.m.observeProvider("charge", start, err)
	if err != nil {
		if Temporary(err) {
			s.deferCheck(ctx, it)
			return it, errs.Wrap(errs.Unavailable, err, "the payment provider did not answer; retry with the same "+IdempotencyHeader)
		}
		// A definitive refusal of the request itself: the payment fails.
		ch = Charge{Status: Failed, FailureReason: providerCode(err), Amount: it.Amount, Currency: it.Currency}
	}
	s.failpoint("provider_answered")
	return s.apply(ctx, it.ID, &ch, sl)
}

func providerCode(err error) string {
	var pe *ProviderError
	if errors.As(err, &pe) && pe.Code != "" {
		return pe.Code
	}
	return "provider_error"
}

// deferCheck pushes a pending intent's next background attempt back.
func (s *Service) deferCheck(ctx context.Context, it Intent) {
	err := s.db.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.db.exec(ctx, tx, `UPDATE payment_intents SET polls = polls + 1, next_check_at = ? WHERE id = ? AND state = ?`,
			ms(s.now().Add(s.backoff(s.cfg.RecoveryAfter, it.Polls+1))), it.ID, Pending)
		return err
	})
	if err != nil && ctx.Err() == nil {
		s.logger.Warn("payment: defer check", "payment", it.ID, "err", err)
	}
}

// backoff doubles base per poll, up to 32 times base.
func (s *Service) backoff(base time.Duration, polls int64) time.Duration {
	return base << min(max(polls, 0), 5)
}

var errStale = errors.New("payment: intent changed concurrently")

// apply applies a provider's view of an intent (ch may be nil: nothing to
// apply, only seal) in one transaction, retried if the intent changed
// under it.
func (s *Service) apply(ctx context.Context, id int64, ch *Charge, sl *sealer) (Intent, error) {
	var out Intent
	var from State
	for attempt := 0; ; attempt++ {
		err := s.db.tx(ctx, func(tx *sql.Tx) error {
			var err error
			out, from, err = s.applyTx(ctx, tx, id, ch, sl)
			return err
		})
		if errors.Is(err, errStale) && attempt < 5 {
			continue
		}
		if err != nil {
			return out, err
		}
		break
	}
	if from != out.State {
		s.m.intents.WithLabelValues(string(out.State)).Inc()
	}
	return out, nil
}

// applyTx is apply inside tx. It returns the intent after the change and
// the state before it.
func (s *Service) applyTx(ctx context.Context, tx *sql.Tx, id int64, ch *Charge, sl *sealer) (Intent, State, error) {
	it, err := scanIntent(s.db.queryRow(ctx, tx, `SELECT `+intentColumns+` FROM payment_intents WHERE id = ?`+s.db.forUpdate(), id))
	if err != nil {
		return it, "", fmt.Errorf("payment: load intent %d: %w", id, err)
	}
	from := it.State
	if ch != nil {
		if err := s.transition(ctx, tx, &it, *ch); err != nil {
			return it, from, err
		}
	}
	if sl != nil && it.State != Pending {
		body, err := sl.body(ctx, tx, it)
		if err != nil {
			return it, from, err
		}
		if sl.reply, err = s.seal(ctx, tx, sl.user, sl.key, sl.status, body); err != nil {
			return it, from, err
		}
	}
	return it, from, nil
}

// transition moves it to ch's state if the machine allows it, with its
// ledger entries, membership changes and events; otherwise it records what
// it may (the provider reference, the next poll) and leaves the state.
func (s *Service) transition(ctx context.Context, tx *sql.Tx, it *Intent, ch Charge) error {
	now := s.now()
	if ch.Ref != "" && it.ProviderRef != "" && ch.Ref != it.ProviderRef {
		s.logger.Error("payment: provider reference mismatch", "payment", it.ID, "have", it.ProviderRef, "got", ch.Ref)
		return nil
	}
	to := ch.Status
	if to == it.State || !CanMove(it.State, to) {
		// Nothing to move (a repeat, or an event older than our state).
		// A payment still processing is polled again later.
		if it.State == Processing && to == Processing {
			it.Polls++
			it.NextCheckAt = now.Add(s.backoff(s.cfg.PollInterval, it.Polls))
			_, err := s.db.exec(ctx, tx, `UPDATE payment_intents SET polls = ?, next_check_at = ? WHERE id = ?`, it.Polls, ms(it.NextCheckAt), it.ID)
			return err
		}
		return nil
	}
	if (to == Succeeded || to == Processing) && (ch.Amount != it.Amount || ch.Currency != it.Currency) {
		// Never book an amount the payer did not agree to; reconciliation
		// reports it.
		s.logger.Error("payment: provider amount differs", "payment", it.ID, "want", currency.Format(it.Amount, it.Currency),
			"got", currency.Format(ch.Amount, ch.Currency))
		return nil
	}
	if ch.Ref != "" {
		it.ProviderRef = ch.Ref
	}
	it.State, it.FailureReason, it.NextAction = to, ch.FailureReason, ch.NextAction
	if ch.ClientSecret != "" {
		it.ClientSecret = ch.ClientSecret
	}
	it.Polls = 0
	switch to {
	case RequiresAction:
		it.NextCheckAt = it.CreatedAt.Add(s.cfg.ActionTimeout)
	case Processing:
		it.NextCheckAt = now.Add(s.cfg.PollInterval)
	default:
		it.NextCheckAt = time.Time{}
		it.NextAction = ""
	}
	if to == Succeeded || to == Failed {
		it.ClientSecret = ""
	}
	it.UpdatedAt = now
	res, err := s.db.exec(ctx, tx, `UPDATE payment_intents SET state = ?, provider_ref = ?, client_secret = ?, next_action = ?,
		failure_reason = ?, polls = 0, next_check_at = ?, updated_at = ?, version = version + 1 WHERE id = ? AND version = ?`,
		it.State, nullStr(it.ProviderRef), it.ClientSecret, it.NextAction, it.FailureReason, ms(it.NextCheckAt), ms(now), it.ID, it.Version)
	if err != nil {
		return fmt.Errorf("payment: update intent %d: %w", it.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errStale
	}
	it.Version++
	switch to {
	case Succeeded:
		entries := []Entry{{Debit: providerAccount(it.Provider, it.Currency), Credit: creatorAccount(it.CreatorID, it.Currency), Amount: it.Amount - it.Fee}}
		if it.Fee > 0 {
			entries = append(entries, Entry{Debit: providerAccount(it.Provider, it.Currency), Credit: feesAccount(it.Currency), Amount: it.Fee})
		}
		if err := s.ledger.Post(ctx, tx, Posting{Ref: "payment:" + idStr(it.ID), Kind: "payment", Currency: it.Currency, Entries: entries}); err != nil {
			return err
		}
	case Failed, Canceled:
		if err := s.releaseDaily(ctx, tx, *it); err != nil {
			return err
		}
	}
	if err := s.emitIntent(ctx, tx, "payment."+string(to), *it, to == Succeeded); err != nil {
		return err
	}
	if it.Kind == KindMembership && to.Final() {
		return s.membershipPaid(ctx, tx, *it, ch)
	}
	return nil
}

// emitIntent writes the outbox event of an intent's transition and, when
// notify is set, queues it for the creator's webhook endpoints.
func (s *Service) emitIntent(ctx context.Context, tx *sql.Tx, kind string, it Intent, notify bool) error {
	payload := map[string]any{
		"payment_id": idStr(it.ID), "kind": it.Kind, "state": it.State, "payer_id": idStr(it.PayerID), "creator_id": idStr(it.CreatorID),
		"amount": it.Amount, "fee": it.Fee, "currency": it.Currency,
	}
	if it.VideoID != 0 {
		payload["video_id"] = idStr(it.VideoID)
	}
	if it.MembershipID != 0 {
		payload["membership_id"] = idStr(it.MembershipID)
	}
	if it.FailureReason != "" {
		payload["failure_reason"] = it.FailureReason
	}
	return s.emit(ctx, tx, kind, it.ID, payload, notifyIf(notify, it.CreatorID))
}

func notifyIf(ok bool, creator int64) int64 {
	if ok {
		return creator
	}
	return 0
}

// emit writes an outbox event and, for creator != 0, a delivery to each of
// the creator's webhook endpoints, all in tx.
func (s *Service) emit(ctx context.Context, tx *sql.Tx, kind string, subject int64, payload map[string]any, creator int64) error {
	if err := s.db.event(ctx, tx, kind, subject, payload); err != nil {
		return err
	}
	if creator == 0 {
		return nil
	}
	return s.queueDeliveries(ctx, tx, creator, kind, payload)
}

// ---- reads ----

// Payment returns one intent as viewer (its payer or its creator) sees it.
func (s *Service) Payment(ctx context.Context, viewer, id int64) (IntentView, error) {
	it, err := s.intent(ctx, nil, id)
	if err != nil {
		return IntentView{}, err
	}
	if viewer == 0 || (viewer != it.PayerID && viewer != it.CreatorID) {
		return IntentView{}, errs.E(errs.NotFound, "no such payment")
	}
	return it.view(viewer), nil
}

// Payments lists the intents viewer paid (asCreator false) or received,
// newest first, before the cursor ID (0 = from the newest).
func (s *Service) Payments(ctx context.Context, viewer int64, asCreator bool, before int64, limit int) ([]IntentView, error) {
	col := "payer_id"
	if asCreator {
		col = "creator_id"
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.query(ctx, nil, `SELECT `+intentColumns+` FROM payment_intents WHERE `+col+` = ? AND id < ? ORDER BY id DESC LIMIT ?`,
		viewer, before, limit)
	if err != nil {
		return nil, fmt.Errorf("payment: list: %w", err)
	}
	defer rows.Close()
	out := []IntentView{}
	for rows.Next() {
		it, err := scanIntent(rows)
		if err != nil {
			return nil, fmt.Errorf("payment: list: %w", err)
		}
		out = append(out, it.view(viewer))
	}
	return out, rows.Err()
}

// ---- completing and canceling ----

// ConfirmRequest is the body of POST /api/v1/payments/{id}/confirm.
type ConfirmRequest struct {
	// Approve is the payer's answer to the test provider's simulated
	// authentication.
	Approve bool `json:"approve"`
	// PaymentMethod is a Stripe PaymentMethod the browser created in
	// the hosted fields, if it did not confirm the payment itself.
	PaymentMethod string `json:"payment_method,omitempty"`
}

// Confirm continues a payment that requires the payer's action.
func (s *Service) Confirm(ctx context.Context, payer int64, key string, id int64, req ConfirmRequest) (Reply, error) {
	if payer <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in to pay")
	}
	if req.PaymentMethod != "" {
		if err := s.provider.CheckPaymentMethod(req.PaymentMethod); err != nil {
			return Reply{}, err
		}
	}
	it, err := s.intent(ctx, nil, id)
	if err != nil || it.PayerID != payer {
		return Reply{}, errs.E(errs.NotFound, "no such payment")
	}
	c, err := s.claimKey(ctx, payer, key, "confirm", Fingerprint("confirm:"+idStr(id), req), func(*sql.Tx) (int64, error) { return id, nil })
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	sl := &sealer{user: payer, key: key, status: http.StatusOK, body: func(ctx context.Context, tx *sql.Tx, it Intent) (any, error) {
		return it.view(payer), nil
	}}
	if it, err = s.intent(ctx, nil, id); err != nil {
		return Reply{}, err
	}
	if it.State == Pending {
		if it, err = s.drive(ctx, it, nil); err != nil {
			return Reply{}, err
		}
	}
	if it.State != RequiresAction {
		// Nothing to do any more: answer with where the payment is.
		return s.driveAndSeal(ctx, it, sl)
	}
	start := time.Now()
	ch, err := s.provider.CompleteAction(ctx, it.ProviderRef, chargeKey(id)+"-action-"+Fingerprint(key, nil)[:16], req.Approve, req.PaymentMethod)
	s.m.observeProvider("complete_action", start, err)
	if err != nil {
		if Temporary(err) {
			return Reply{}, errs.Wrap(errs.Unavailable, err, "the payment provider did not answer; retry with the same "+IdempotencyHeader)
		}
		return s.sealError(ctx, payer, key, errs.E(errs.Conflict, "the provider refused: %s", providerCode(err)))
	}
	s.failpoint("provider_answered")
	if _, err := s.apply(ctx, id, &ch, sl); err != nil {
		return Reply{}, err
	}
	return sl.reply, nil
}

// Cancel cancels a payment that waits for the payer's action.
func (s *Service) Cancel(ctx context.Context, payer int64, key string, id int64) (Reply, error) {
	if payer <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in to pay")
	}
	it, err := s.intent(ctx, nil, id)
	if err != nil || it.PayerID != payer {
		return Reply{}, errs.E(errs.NotFound, "no such payment")
	}
	c, err := s.claimKey(ctx, payer, key, "cancel", Fingerprint("cancel:"+idStr(id), nil), func(*sql.Tx) (int64, error) { return id, nil })
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	if it, err = s.intent(ctx, nil, id); err != nil {
		return Reply{}, err
	}
	if it.State == Pending {
		if it, err = s.drive(ctx, it, nil); err != nil {
			return Reply{}, err
		}
	}
	sl := &sealer{user: payer, key: key, status: http.StatusOK, body: func(ctx context.Context, tx *sql.Tx, it Intent) (any, error) {
		return it.view(payer), nil
	}}
	switch it.State {
	case Canceled:
		return s.driveAndSeal(ctx, it, sl)
	case RequiresAction:
	default:
		return s.sealError(ctx, payer, key, errs.E(errs.Conflict, "a payment that is %s can no longer be canceled", it.State))
	}
	ch, err := s.cancelAtProvider(ctx, it)
	if err != nil {
		return Reply{}, err
	}
	if _, err := s.apply(ctx, id, &ch, sl); err != nil {
		return Reply{}, err
	}
	return sl.reply, nil
}

func (s *Service) cancelAtProvider(ctx context.Context, it Intent) (Charge, error) {
	start := time.Now()
	ch, err := s.provider.CancelCharge(ctx, it.ProviderRef, chargeKey(it.ID)+"-cancel")
	s.m.observeProvider("cancel", start, err)
	if err != nil {
		if Temporary(err) {
			return ch, errs.Wrap(errs.Unavailable, err, "the payment provider did not answer; retry with the same "+IdempotencyHeader)
		}
		// The provider would not cancel (the payer acted meanwhile):
		// take its current view instead.
		start = time.Now()
		ch, err = s.provider.GetCharge(ctx, it.ProviderRef)
		s.m.observeProvider("get", start, err)
		if err != nil {
			return ch, errs.Wrap(errs.Unavailable, err, "the payment provider did not answer; retry with the same "+IdempotencyHeader)
		}
	}
	return ch, nil
}
