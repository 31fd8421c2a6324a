package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment/currency"
)

// Payout is money sent from a creator's balance to their destination.
//
// The ledger moves the amount from the creator's account to
// payouts_in_transit when the payout is recorded (so it cannot be spent
// twice), from payouts_in_transit to the provider account when the
// provider reports it paid, and back to the creator if it fails.
type Payout struct {
	ID            int64
	CreatorID     int64
	Amount        int64
	Currency      string
	State         PayoutState
	Provider      string
	ProviderRef   string
	Destination   string
	FailureReason string
	Version       int64
	Polls         int64
	NextCheckAt   time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const payoutColumns = `id, creator_id, amount, currency, state, provider, COALESCE(provider_ref, ''), destination, failure_reason,
	version, polls, next_check_at, created_at, updated_at`

func scanPayout(sc interface{ Scan(...any) error }) (Payout, error) {
	var p Payout
	var next, created, updated int64
	err := sc.Scan(&p.ID, &p.CreatorID, &p.Amount, &p.Currency, &p.State, &p.Provider, &p.ProviderRef, &p.Destination, &p.FailureReason,
		&p.Version, &p.Polls, &next, &created, &updated)
	p.NextCheckAt, p.CreatedAt, p.UpdatedAt = fromMS(next), fromMS(created), fromMS(updated)
	return p, err
}

// PayoutView is a payout as the API shows it.
type PayoutView struct {
	ID            string      `json:"id"`
	State         PayoutState `json:"state"`
	Amount        int64       `json:"amount"`
	Currency      string      `json:"currency"`
	Destination   string      `json:"destination"`
	ProviderRef   string      `json:"provider_ref,omitempty"`
	FailureReason string      `json:"failure_reason,omitempty"`
	CreatedAt     time.Time   `json:"created_at"`
}

func (p Payout) view() PayoutView {
	return PayoutView{ID: idStr(p.ID), State: p.State, Amount: p.Amount, Currency: p.Currency, Destination: p.Destination,
		ProviderRef: p.ProviderRef, FailureReason: p.FailureReason, CreatedAt: p.CreatedAt}
}

func payoutKey(id int64) string { return "bp-po-" + strconv.FormatInt(id, 10) }

// canMovePayout is the payout state machine.
func canMovePayout(from, to PayoutState) bool {
	switch from {
	case PayoutPending:
		return to == PayoutInTransit || to == PayoutPaid || to == PayoutFailed
	case PayoutInTransit:
		return to == PayoutPaid || to == PayoutFailed
	}
	return false
}

// PayoutAPIRequest is the body of POST /api/v1/payouts.
type PayoutAPIRequest struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// DestinationRequest is the body of PUT /api/v1/payouts/destination.
type DestinationRequest struct {
	Destination string `json:"destination"`
}

// SetDestination sets where the caller's payouts go.
func (s *Service) SetDestination(ctx context.Context, creator int64, key string, req DestinationRequest) (Reply, error) {
	if creator <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in first")
	}
	if err := CheckKey(key); err != nil {
		return Reply{}, err
	}
	req.Destination = strings.TrimSpace(req.Destination)
	if err := s.provider.CheckDestination(req.Destination); err != nil {
		return Reply{}, err
	}
	c, err := s.claimKey(ctx, creator, key, "destination", Fingerprint("destination", req), func(tx *sql.Tx) (int64, error) {
		_, err := s.db.exec(ctx, tx, `INSERT INTO payout_accounts(creator_id, provider, destination, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (creator_id, provider) DO UPDATE SET destination = excluded.destination, updated_at = excluded.updated_at`,
			creator, s.provider.Name(), req.Destination, ms(s.now()))
		return creator, err
	})
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	var r Reply
	err = s.db.tx(ctx, func(tx *sql.Tx) error {
		var e error
		r, e = s.seal(ctx, tx, creator, key, http.StatusOK, req)
		return e
	})
	return r, err
}

// destination returns where creator is paid out.
func (s *Service) destination(ctx context.Context, creator int64) (string, error) {
	var d string
	err := s.db.queryRow(ctx, nil, `SELECT destination FROM payout_accounts WHERE creator_id = ? AND provider = ?`, creator, s.provider.Name()).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return s.provider.DefaultDestination(creator), nil
	}
	if err != nil {
		return "", fmt.Errorf("payment: payout destination: %w", err)
	}
	return d, nil
}

// RequestPayout pays out part of the caller's balance.
func (s *Service) RequestPayout(ctx context.Context, creator int64, key string, req PayoutAPIRequest) (Reply, error) {
	if creator <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in first")
	}
	if err := CheckKey(key); err != nil {
		return Reply{}, err
	}
	if !currency.Valid(req.Currency) {
		return Reply{}, errs.E(errs.Invalid, "currency %q is not an ISO 4217 code (upper case, e.g. USD)", req.Currency)
	}
	if req.Amount < s.cfg.PayoutMin {
		return Reply{}, errs.E(errs.Invalid, "payouts start at %s", currency.Format(s.cfg.PayoutMin, req.Currency))
	}
	if req.Amount > maxAmount {
		return Reply{}, errs.E(errs.Invalid, "amount out of range")
	}
	dest, err := s.destination(ctx, creator)
	if err != nil {
		return Reply{}, err
	}
	if dest == "" {
		return Reply{}, errs.E(errs.Conflict, "set a payout destination first (PUT /api/v1/payouts/destination)")
	}
	c, err := s.claimKey(ctx, creator, key, "payout", Fingerprint("payout", req), func(tx *sql.Tx) (int64, error) {
		acct := creatorAccount(creator, req.Currency)
		// Lock the creator's account row (Postgres) so two payouts
		// cannot both spend the same balance; SQLite's writer is serial.
		if _, err := s.ledger.account(ctx, tx, acct, req.Currency); err != nil {
			return 0, err
		}
		if s.db.Dialect == Postgres {
			var id int64
			if err := s.db.queryRow(ctx, tx, `SELECT id FROM ledger_accounts WHERE code = ?`+s.db.forUpdate(), acct).Scan(&id); err != nil {
				return 0, fmt.Errorf("payment: lock account: %w", err)
			}
		}
		bal, err := s.ledger.Balance(ctx, tx, acct)
		if err != nil {
			return 0, err
		}
		if bal.Balance < req.Amount {
			return 0, errs.E(errs.Invalid, "your available balance is %s", currency.Format(bal.Balance, req.Currency))
		}
		id, err := s.newID(creator)
		if err != nil {
			return 0, err
		}
		now := s.now()
		p := Payout{ID: id, CreatorID: creator, Amount: req.Amount, Currency: req.Currency, State: PayoutPending, Provider: s.provider.Name(),
			Destination: dest, NextCheckAt: now.Add(s.cfg.RecoveryAfter), CreatedAt: now, UpdatedAt: now}
		if _, err := s.db.exec(ctx, tx, `INSERT INTO payouts(id, creator_id, amount, currency, state, provider, destination, next_check_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.ID, p.CreatorID, p.Amount, p.Currency, p.State, p.Provider, p.Destination,
			ms(p.NextCheckAt), ms(now), ms(now)); err != nil {
			return 0, fmt.Errorf("payment: payout: %w", err)
		}
		if err := s.ledger.Post(ctx, tx, Posting{Ref: "payout:" + idStr(id), Kind: "payout", Currency: p.Currency,
			Entries: []Entry{{Debit: acct, Credit: transitAccount(p.Provider, p.Currency), Amount: p.Amount}}}); err != nil {
			return 0, err
		}
		return id, s.emitPayout(ctx, tx, "payout.created", p, true)
	})
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	s.failpoint("payout_reserved")
	p, err := s.payout(ctx, nil, c.resourceID, false)
	if err != nil {
		return Reply{}, err
	}
	sl := &sealer{user: creator, key: key, status: http.StatusCreated}
	if _, err := s.drivePayout(ctx, p, sl); err != nil {
		return Reply{}, err
	}
	return sl.reply, nil
}

func (s *Service) payout(ctx context.Context, tx *sql.Tx, id int64, lock bool) (Payout, error) {
	q := `SELECT ` + payoutColumns + ` FROM payouts WHERE id = ?`
	if lock {
		q += s.db.forUpdate()
	}
	p, err := scanPayout(s.db.queryRow(ctx, tx, q, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, errs.E(errs.NotFound, "no such payout")
	}
	if err != nil {
		return p, fmt.Errorf("payment: load payout %d: %w", id, err)
	}
	return p, nil
}

// drivePayout calls the provider for a pending payout and applies its
// answer; sl (may be nil) stores the response of the creating request.
func (s *Service) drivePayout(ctx context.Context, p Payout, sl *sealer) (Payout, error) {
	var pp *ProviderPayout
	if p.State == PayoutPending && p.Provider == s.provider.Name() {
		start := time.Now()
		got, err := s.provider.Payout(ctx, PayoutRequest{Key: payoutKey(p.ID), PayoutID: p.ID, Amount: p.Amount, Currency: p.Currency, Destination: p.Destination})
		s.m.observeProvider("payout", start, err)
		if err != nil {
			if Temporary(err) {
				return p, errs.Wrap(errs.Unavailable, err, "the payment provider did not answer; retry with the same "+IdempotencyHeader)
			}
			got = ProviderPayout{Status: PayoutFailed, FailureReason: providerCode(err), Amount: p.Amount, Currency: p.Currency}
		}
		s.failpoint("provider_answered")
		pp = &got
	} else if sl == nil {
		return p, nil
	}
	var out Payout
	for attempt := 0; ; attempt++ {
		err := s.db.tx(ctx, func(tx *sql.Tx) error {
			var err error
			out, err = s.applyPayoutTx(ctx, tx, p.ID, pp)
			if err != nil || sl == nil {
				return err
			}
			if out.State != PayoutPending {
				sl.reply, err = s.seal(ctx, tx, sl.user, sl.key, sl.status, out.view())
			}
			return err
		})
		if errors.Is(err, errStale) && attempt < 5 {
			continue
		}
		return out, err
	}
}

// applyPayoutTx applies a provider's view of a payout in tx.
func (s *Service) applyPayoutTx(ctx context.Context, tx *sql.Tx, id int64, pp *ProviderPayout) (Payout, error) {
	p, err := s.payout(ctx, tx, id, true)
	if err != nil || pp == nil {
		return p, err
	}
	now := s.now()
	if pp.Ref != "" && p.ProviderRef != "" && pp.Ref != p.ProviderRef {
		s.logger.Error("payment: payout reference mismatch", "payout", p.ID, "have", p.ProviderRef, "got", pp.Ref)
		return p, nil
	}
	if !canMovePayout(p.State, pp.Status) {
		if p.State == PayoutInTransit && pp.Status == PayoutInTransit {
			p.Polls++
			p.NextCheckAt = now.Add(s.backoff(s.cfg.PollInterval, p.Polls))
			_, err := s.db.exec(ctx, tx, `UPDATE payouts SET polls = ?, next_check_at = ? WHERE id = ?`, p.Polls, ms(p.NextCheckAt), p.ID)
			return p, err
		}
		return p, nil
	}
	if pp.Status != PayoutFailed && (pp.Amount != p.Amount || pp.Currency != p.Currency) {
		s.logger.Error("payment: provider payout amount differs", "payout", p.ID)
		return p, nil
	}
	from := p.State
	if pp.Ref != "" {
		p.ProviderRef = pp.Ref
	}
	p.State, p.FailureReason, p.Polls = pp.Status, pp.FailureReason, 0
	p.NextCheckAt = time.Time{}
	if p.State == PayoutInTransit {
		p.NextCheckAt = now.Add(s.cfg.PollInterval)
	}
	res, err := s.db.exec(ctx, tx, `UPDATE payouts SET state = ?, provider_ref = ?, failure_reason = ?, polls = 0, next_check_at = ?,
		updated_at = ?, version = version + 1 WHERE id = ? AND version = ?`,
		p.State, nullStr(p.ProviderRef), p.FailureReason, ms(p.NextCheckAt), ms(now), p.ID, p.Version)
	if err != nil {
		return p, fmt.Errorf("payment: update payout: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return p, errStale
	}
	p.Version++
	switch p.State {
	case PayoutPaid:
		err = s.ledger.Post(ctx, tx, Posting{Ref: "payout_paid:" + idStr(p.ID), Kind: "payout_paid", Currency: p.Currency,
			Entries: []Entry{{Debit: transitAccount(p.Provider, p.Currency), Credit: providerAccount(p.Provider, p.Currency), Amount: p.Amount}}})
	case PayoutFailed:
		err = s.ledger.Post(ctx, tx, Posting{Ref: "payout_failed:" + idStr(p.ID), Kind: "payout_reversal", Currency: p.Currency,
			Entries: []Entry{{Debit: transitAccount(p.Provider, p.Currency), Credit: creatorAccount(p.CreatorID, p.Currency), Amount: p.Amount}}})
	}
	if err != nil {
		return p, err
	}
	if from != p.State {
		s.m.payouts.WithLabelValues(string(p.State)).Inc()
	}
	return p, s.emitPayout(ctx, tx, "payout."+string(p.State), p, true)
}

func (s *Service) emitPayout(ctx context.Context, tx *sql.Tx, kind string, p Payout, notify bool) error {
	payload := map[string]any{"payout_id": idStr(p.ID), "creator_id": idStr(p.CreatorID), "state": p.State, "amount": p.Amount, "currency": p.Currency}
	if p.FailureReason != "" {
		payload["failure_reason"] = p.FailureReason
	}
	return s.emit(ctx, tx, kind, p.ID, payload, notifyIf(notify, p.CreatorID))
}

// Payouts lists the creator's payouts, newest first.
func (s *Service) Payouts(ctx context.Context, creator, before int64, limit int) ([]PayoutView, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.query(ctx, nil, `SELECT `+payoutColumns+` FROM payouts WHERE creator_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, creator, before, limit)
	if err != nil {
		return nil, fmt.Errorf("payment: payouts: %w", err)
	}
	defer rows.Close()
	out := []PayoutView{}
	for rows.Next() {
		p, err := scanPayout(rows)
		if err != nil {
			return nil, fmt.Errorf("payment: payouts: %w", err)
		}
		out = append(out, p.view())
	}
	return out, rows.Err()
}

// CurrencyBalance is a creator's money in one currency.
type CurrencyBalance struct {
	Currency string `json:"currency"`
	// Available is the creator's ledger balance: paid out on request.
	Available int64 `json:"available"`
	// Pending is the creator's share of payments still settling; not in
	// the ledger until they succeed.
	Pending int64 `json:"pending"`
	// InTransit is payouts sent and not yet confirmed.
	InTransit int64 `json:"in_transit"`
	// PaidOut is payouts the provider confirmed.
	PaidOut int64 `json:"paid_out"`
}

// CreatorBalance is the answer of GET /api/v1/creators/{id}/balance.
type CreatorBalance struct {
	CreatorID   string            `json:"creator_id"`
	Balances    []CurrencyBalance `json:"balances"`
	Destination string            `json:"payout_destination,omitempty"`
}

// Balance returns a creator's balances: available from the ledger, the
// rest from payments and payouts in flight.
func (s *Service) Balance(ctx context.Context, creator int64) (CreatorBalance, error) {
	out := CreatorBalance{CreatorID: idStr(creator), Balances: []CurrencyBalance{}}
	by := map[string]*CurrencyBalance{}
	get := func(cur string) *CurrencyBalance {
		if by[cur] == nil {
			by[cur] = &CurrencyBalance{Currency: cur}
		}
		return by[cur]
	}
	accts, err := s.ledger.Balances(ctx, creator)
	if err != nil {
		return out, err
	}
	for _, a := range accts {
		get(a.Currency).Available += a.Balance
	}
	rows, err := s.db.query(ctx, nil, `SELECT currency, COALESCE(SUM(amount - fee), 0) FROM payment_intents
		WHERE creator_id = ? AND state = 'processing' GROUP BY currency`, creator)
	if err != nil {
		return out, fmt.Errorf("payment: balance: %w", err)
	}
	for rows.Next() {
		var cur string
		var v int64
		if err := rows.Scan(&cur, &v); err != nil {
			rows.Close()
			return out, err
		}
		get(cur).Pending += v
	}
	rows.Close()
	rows, err = s.db.query(ctx, nil, `SELECT currency, state, COALESCE(SUM(amount), 0) FROM payouts WHERE creator_id = ? AND state <> 'failed'
		GROUP BY currency, state`, creator)
	if err != nil {
		return out, fmt.Errorf("payment: balance: %w", err)
	}
	for rows.Next() {
		var cur, st string
		var v int64
		if err := rows.Scan(&cur, &st, &v); err != nil {
			rows.Close()
			return out, err
		}
		if PayoutState(st) == PayoutPaid {
			get(cur).PaidOut += v
		} else {
			get(cur).InTransit += v
		}
	}
	rows.Close()
	for _, cur := range slices.Sorted(maps.Keys(by)) {
		out.Balances = append(out.Balances, *by[cur])
	}
	if out.Destination, err = s.destination(ctx, creator); err != nil {
		return out, err
	}
	return out, nil
}

// maxAmount bounds any amount a request may carry.
const maxAmount = 1_000_000_000_000
