package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// MembershipState is where a membership is.
//
//	incomplete ──► active ◄──► past_due ──► canceled
//	     │            └──────────────────────► canceled (at period end)
//	     └──► incomplete_expired (the first payment failed)
type MembershipState string

// Membership states.
const (
	MembershipIncomplete        MembershipState = "incomplete"
	MembershipActive            MembershipState = "active"
	MembershipPastDue           MembershipState = "past_due"
	MembershipCanceled          MembershipState = "canceled"
	MembershipIncompleteExpired MembershipState = "incomplete_expired"
)

// Membership is a member's monthly membership of a creator.
type Membership struct {
	ID, MemberID, CreatorID int64
	Amount                  int64
	Currency                string
	State                   MembershipState
	PaymentMethod           string
	Provider                string
	Period                  int64
	PeriodEnd               time.Time
	CancelAtPeriodEnd       bool
	Attempts                int64
	NextRenewalAt           time.Time
	EndedReason             string
	Version                 int64
	CreatedAt, UpdatedAt    time.Time
}

const membershipColumns = `id, member_id, creator_id, amount, currency, state, payment_method, provider, period, period_end,
	cancel_at_period_end, attempts, next_renewal_at, ended_reason, version, created_at, updated_at`

func scanMembership(sc interface{ Scan(...any) error }) (Membership, error) {
	var m Membership
	var end, next, created, updated, cancel int64
	err := sc.Scan(&m.ID, &m.MemberID, &m.CreatorID, &m.Amount, &m.Currency, &m.State, &m.PaymentMethod, &m.Provider, &m.Period, &end,
		&cancel, &m.Attempts, &next, &m.EndedReason, &m.Version, &created, &updated)
	m.PeriodEnd, m.NextRenewalAt, m.CreatedAt, m.UpdatedAt = fromMS(end), fromMS(next), fromMS(created), fromMS(updated)
	m.CancelAtPeriodEnd = cancel != 0
	return m, err
}

func (s *Service) membership(ctx context.Context, tx *sql.Tx, id int64, lock bool) (Membership, error) {
	q := `SELECT ` + membershipColumns + ` FROM memberships WHERE id = ?`
	if lock {
		q += s.db.forUpdate()
	}
	m, err := scanMembership(s.db.queryRow(ctx, tx, q, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, errs.E(errs.NotFound, "no such membership")
	}
	if err != nil {
		return m, fmt.Errorf("payment: load membership %d: %w", id, err)
	}
	return m, nil
}

// updateMembership writes m's mutable fields if its version is unchanged.
func (s *Service) updateMembership(ctx context.Context, tx *sql.Tx, m *Membership) error {
	cancel := 0
	if m.CancelAtPeriodEnd {
		cancel = 1
	}
	m.UpdatedAt = s.now()
	res, err := s.db.exec(ctx, tx, `UPDATE memberships SET state = ?, period = ?, period_end = ?, cancel_at_period_end = ?, attempts = ?,
		next_renewal_at = ?, ended_reason = ?, updated_at = ?, version = version + 1 WHERE id = ? AND version = ?`,
		m.State, m.Period, ms(m.PeriodEnd), cancel, m.Attempts, ms(m.NextRenewalAt), m.EndedReason, ms(m.UpdatedAt), m.ID, m.Version)
	if err != nil {
		return fmt.Errorf("payment: update membership %d: %w", m.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errStale
	}
	m.Version++
	return nil
}

// MembershipView is a membership as the API shows it.
type MembershipView struct {
	ID                string          `json:"id"`
	MemberID          string          `json:"member_id"`
	CreatorID         string          `json:"creator_id"`
	State             MembershipState `json:"state"`
	Amount            int64           `json:"amount"`
	Currency          string          `json:"currency"`
	Periods           int64           `json:"periods_paid"`
	PeriodEnd         *time.Time      `json:"current_period_end,omitempty"`
	CancelAtPeriodEnd bool            `json:"cancel_at_period_end"`
	EndedReason       string          `json:"ended_reason,omitempty"`
	CreatedAt         time.Time       `json:"created_at"`
}

func (m Membership) view() MembershipView {
	v := MembershipView{
		ID: idStr(m.ID), MemberID: idStr(m.MemberID), CreatorID: idStr(m.CreatorID), State: m.State, Amount: m.Amount,
		Currency: m.Currency, Periods: m.Period, CancelAtPeriodEnd: m.CancelAtPeriodEnd, EndedReason: m.EndedReason, CreatedAt: m.CreatedAt,
	}
	if !m.PeriodEnd.IsZero() {
		t := m.PeriodEnd
		v.PeriodEnd = &t
	}
	return v
}

func (s *Service) emitMembership(ctx context.Context, tx *sql.Tx, kind string, m Membership, notify bool) error {
	payload := map[string]any{
		"membership_id": idStr(m.ID), "member_id": idStr(m.MemberID), "creator_id": idStr(m.CreatorID), "state": m.State,
		"amount": m.Amount, "currency": m.Currency, "periods_paid": m.Period,
	}
	if !m.PeriodEnd.IsZero() {
		payload["current_period_end"] = m.PeriodEnd
	}
	if m.EndedReason != "" {
		payload["ended_reason"] = m.EndedReason
	}
	return s.emit(ctx, tx, kind, m.ID, payload, notifyIf(notify, m.CreatorID))
}

// Plan is a creator's monthly membership price.
type Plan struct {
	CreatorID string `json:"creator_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
}

// Plan returns creator's membership plan (the configured default when the
// creator set none).
func (s *Service) Plan(ctx context.Context, creator int64) (Plan, error) {
	p := Plan{CreatorID: idStr(creator), Amount: s.cfg.MembershipPrice, Currency: s.cfg.DefaultCurrency}
	err := s.db.queryRow(ctx, nil, `SELECT amount, currency FROM membership_plans WHERE creator_id = ?`, creator).Scan(&p.Amount, &p.Currency)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("payment: plan: %w", err)
	}
	return p, nil
}

// PlanRequest is the body of PUT /api/v1/memberships/plan.
type PlanRequest struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// SetPlan sets the caller's membership price. Existing memberships keep
// their price.
func (s *Service) SetPlan(ctx context.Context, creator int64, key string, req PlanRequest) (Reply, error) {
	if creator <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in first")
	}
	if err := CheckKey(key); err != nil {
		return Reply{}, err
	}
	if err := s.checkMoney(req.Amount, req.Currency); err != nil {
		return Reply{}, err
	}
	var r Reply
	c, err := s.claimKey(ctx, creator, key, "plan", Fingerprint("plan", req), func(tx *sql.Tx) (int64, error) {
		if _, err := s.db.exec(ctx, tx, `INSERT INTO membership_plans(creator_id, amount, currency, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (creator_id) DO UPDATE SET amount = excluded.amount, currency = excluded.currency, updated_at = excluded.updated_at`,
			creator, req.Amount, req.Currency, ms(s.now())); err != nil {
			return 0, fmt.Errorf("payment: plan: %w", err)
		}
		return creator, nil
	})
	if err != nil || c.reply != nil {
		if c.reply != nil {
			return *c.reply, nil
		}
		return Reply{}, err
	}
	err = s.db.tx(ctx, func(tx *sql.Tx) error {
		var e error
		r, e = s.seal(ctx, tx, creator, key, http.StatusOK, Plan{CreatorID: idStr(creator), Amount: req.Amount, Currency: req.Currency})
		return e
	})
	return r, err
}

// SubscribeRequest is the body of POST /api/v1/memberships.
type SubscribeRequest struct {
	CreatorID       string `json:"creator_id,omitempty"`
	CreatorUsername string `json:"creator_username,omitempty"`
	PaymentMethod   string `json:"payment_method,omitempty"`
}

// SubscribeReply is the answer to a subscription.
type SubscribeReply struct {
	Membership MembershipView `json:"membership"`
	Payment    IntentView     `json:"payment"`
}

// Subscribe starts a membership of a creator at the creator's plan price:
// the membership is incomplete until its first payment succeeds.
func (s *Service) Subscribe(ctx context.Context, member int64, key string, req SubscribeRequest) (Reply, error) {
	if member <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in to pay")
	}
	if err := CheckKey(key); err != nil {
		return Reply{}, err
	}
	if err := s.provider.CheckPaymentMethod(req.PaymentMethod); err != nil {
		return Reply{}, err
	}
	creator, _, err := s.resolveCreator(ctx, TipRequest{CreatorID: req.CreatorID, CreatorUsername: req.CreatorUsername}, nil)
	if err != nil {
		return Reply{}, err
	}
	if creator == member {
		return Reply{}, errs.E(errs.Invalid, "you cannot join your own membership")
	}
	plan, err := s.Plan(ctx, creator)
	if err != nil {
		return Reply{}, err
	}
	if err := s.checkMoney(plan.Amount, plan.Currency); err != nil {
		return Reply{}, errs.E(errs.Conflict, "this creator's membership plan is not payable here: %s", errs.Message(err))
	}
	c, err := s.claimKey(ctx, member, key, "subscribe", Fingerprint("subscribe", req), func(tx *sql.Tx) (int64, error) {
		var existing int64
		err := s.db.queryRow(ctx, tx, `SELECT id FROM memberships WHERE member_id = ? AND creator_id = ? AND state IN ('incomplete', 'active', 'past_due')`,
			member, creator).Scan(&existing)
		if err == nil {
			return 0, errs.E(errs.Conflict, "you already have a membership of this creator (%d)", existing)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("payment: membership: %w", err)
		}
		mid, err := s.newID(member)
		if err != nil {
			return 0, err
		}
		iid, err := s.newID(member)
		if err != nil {
			return 0, err
		}
		now := s.now()
		m := Membership{ID: mid, MemberID: member, CreatorID: creator, Amount: plan.Amount, Currency: plan.Currency,
			State: MembershipIncomplete, PaymentMethod: req.PaymentMethod, Provider: s.provider.Name(), CreatedAt: now, UpdatedAt: now}
		if _, err := s.db.exec(ctx, tx, `INSERT INTO memberships(id, member_id, creator_id, amount, currency, state, payment_method, provider, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, m.ID, m.MemberID, m.CreatorID, m.Amount, m.Currency, m.State, m.PaymentMethod, m.Provider,
			ms(now), ms(now)); err != nil {
			return 0, fmt.Errorf("payment: membership: %w", err)
		}
		it := Intent{ID: iid, Kind: KindMembership, PayerID: member, CreatorID: creator, MembershipID: mid, Period: 1, Attempt: 1,
			Amount: plan.Amount, Fee: s.fee(plan.Amount), Currency: plan.Currency, PaymentMethod: req.PaymentMethod,
			State: Pending, Provider: s.provider.Name(), Day: unixDay(now), NextCheckAt: now.Add(s.cfg.RecoveryAfter), CreatedAt: now, UpdatedAt: now}
		if err := s.reserveDaily(ctx, tx, member, it.Day, it.Currency, it.Amount); err != nil {
			return 0, err
		}
		if err := s.insertIntent(ctx, tx, it); err != nil {
			return 0, err
		}
		if err := s.emitMembership(ctx, tx, "membership.created", m, false); err != nil {
			return 0, err
		}
		return iid, s.emitIntent(ctx, tx, "payment.created", it, false)
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
	return s.driveAndSeal(ctx, it, &sealer{user: member, key: key, status: http.StatusCreated, body: func(ctx context.Context, tx *sql.Tx, it Intent) (any, error) {
		m, err := s.membership(ctx, tx, it.MembershipID, false)
		if err != nil {
			return nil, err
		}
		return SubscribeReply{Membership: m.view(), Payment: it.view(member)}, nil
	}})
}

// membershipPaid applies the final state of a membership payment to its
// membership, in the transaction of the payment's transition.
func (s *Service) membershipPaid(ctx context.Context, tx *sql.Tx, it Intent, ch Charge) error {
	m, err := s.membership(ctx, tx, it.MembershipID, true)
	if err != nil {
		return err
	}
	now := s.now()
	if it.Period != m.Period+1 {
		s.logger.Warn("payment: membership payment for an unexpected period", "membership", m.ID, "payment", it.ID, "period", it.Period, "paid", m.Period)
		return nil
	}
	switch it.State {
	case Succeeded:
		if m.State == MembershipCanceled || m.State == MembershipIncompleteExpired {
			// Money arrived for a membership that ended (a late
			// settlement): keep it booked, do not revive the membership.
			s.logger.Warn("payment: payment for an ended membership", "membership", m.ID, "payment", it.ID)
			return nil
		}
		base := m.PeriodEnd
		if base.Before(now) {
			base = now
		}
		first := m.Period == 0
		m.Period, m.PeriodEnd, m.State, m.Attempts = it.Period, base.Add(s.cfg.MembershipPeriod), MembershipActive, 0
		m.NextRenewalAt = m.PeriodEnd
		if err := s.updateMembership(ctx, tx, &m); err != nil {
			return err
		}
		if first && (ch.PaymentMethod != "" || ch.Customer != "") {
			// What the provider saved for the renewals (Stripe: the
			// customer and the card the hosted fields collected).
			pm := m.PaymentMethod
			if ch.PaymentMethod != "" {
				pm = ch.PaymentMethod
			}
			if _, err := s.db.exec(ctx, tx, `UPDATE memberships SET payment_method = ?, customer = ? WHERE id = ?`, pm, ch.Customer, m.ID); err != nil {
				return fmt.Errorf("payment: membership %d: %w", m.ID, err)
			}
		}
		kind := "membership.renewed"
		if first {
			kind = "membership.started"
		}
		return s.emitMembership(ctx, tx, kind, m, true)
	case Failed, Canceled:
		switch {
		case m.State == MembershipIncomplete:
			m.State, m.EndedReason = MembershipIncompleteExpired, "first_payment_"+string(it.State)
			if err := s.updateMembership(ctx, tx, &m); err != nil {
				return err
			}
			return s.emitMembership(ctx, tx, "membership.failed", m, false)
		case m.State == MembershipActive || m.State == MembershipPastDue:
			m.Attempts++
			if m.Attempts >= int64(s.cfg.MembershipMaxRetries) {
				m.State, m.EndedReason = MembershipCanceled, "renewal_failed"
				if err := s.updateMembership(ctx, tx, &m); err != nil {
					return err
				}
				return s.emitMembership(ctx, tx, "membership.canceled", m, true)
			}
			m.State, m.NextRenewalAt = MembershipPastDue, now.Add(s.cfg.MembershipRetry)
			if err := s.updateMembership(ctx, tx, &m); err != nil {
				return err
			}
			return s.emitMembership(ctx, tx, "membership.past_due", m, true)
		}
	}
	return nil
}

// CancelMembership ends the caller's membership at the end of the paid
// period (at once when a renewal is past due).
func (s *Service) CancelMembership(ctx context.Context, member int64, key string, id int64) (Reply, error) {
	if member <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in first")
	}
	m, err := s.membership(ctx, nil, id, false)
	if err != nil || m.MemberID != member {
		return Reply{}, errs.E(errs.NotFound, "no such membership")
	}
	c, err := s.claimKey(ctx, member, key, "cancel_membership", Fingerprint("cancel_membership:"+idStr(id), nil), func(*sql.Tx) (int64, error) { return id, nil })
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	var r Reply
	for attempt := 0; ; attempt++ {
		err = s.db.tx(ctx, func(tx *sql.Tx) error {
			m, err := s.membership(ctx, tx, id, true)
			if err != nil {
				return err
			}
			switch m.State {
			case MembershipActive:
				if !m.CancelAtPeriodEnd {
					m.CancelAtPeriodEnd = true
					if err := s.updateMembership(ctx, tx, &m); err != nil {
						return err
					}
					if err := s.emitMembership(ctx, tx, "membership.updated", m, true); err != nil {
						return err
					}
				}
			case MembershipPastDue:
				m.State, m.EndedReason = MembershipCanceled, "canceled_by_member"
				if err := s.updateMembership(ctx, tx, &m); err != nil {
					return err
				}
				if err := s.emitMembership(ctx, tx, "membership.canceled", m, true); err != nil {
					return err
				}
			case MembershipIncomplete:
				r, err = s.seal(ctx, tx, member, key, http.StatusConflict, map[string]string{"error": "the first payment is still in progress; cancel the payment instead"})
				return err
			}
			r, err = s.seal(ctx, tx, member, key, http.StatusOK, m.view())
			return err
		})
		if errors.Is(err, errStale) && attempt < 5 {
			continue
		}
		return r, err
	}
}

// Memberships lists the memberships viewer holds (asCreator false) or
// receives, newest first; creator, when not 0, filters by creator.
func (s *Service) Memberships(ctx context.Context, viewer int64, asCreator bool, creator int64, before int64, limit int) ([]MembershipView, error) {
	col := "member_id"
	if asCreator {
		col = "creator_id"
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	q := `SELECT ` + membershipColumns + ` FROM memberships WHERE ` + col + ` = ? AND id < ?`
	args := []any{viewer, before}
	if creator != 0 && !asCreator {
		q += ` AND creator_id = ?`
		args = append(args, creator)
	}
	rows, err := s.db.query(ctx, nil, q+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("payment: memberships: %w", err)
	}
	defer rows.Close()
	out := []MembershipView{}
	for rows.Next() {
		m, err := scanMembership(rows)
		if err != nil {
			return nil, fmt.Errorf("payment: memberships: %w", err)
		}
		out = append(out, m.view())
	}
	return out, rows.Err()
}

// RenewDue starts the renewal payment of every membership whose period
// ended (or whose past-due retry is due), and ends memberships canceled at
// period end. It returns how many it handled.
func (s *Service) RenewDue(ctx context.Context) (int, error) {
	rows, err := s.db.query(ctx, nil, `SELECT id FROM memberships WHERE state IN ('active', 'past_due') AND next_renewal_at <= ? AND provider = ?
		ORDER BY next_renewal_at LIMIT 100`, ms(s.now()), s.provider.Name())
	if err != nil {
		return 0, fmt.Errorf("payment: due memberships: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	n := 0
	var errList []error
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		it, err := s.renewOne(ctx, id)
		if err != nil {
			errList = append(errList, err)
			continue
		}
		n++
		if it != nil {
			if _, err := s.drive(ctx, *it, nil); err != nil && errs.KindOf(err) != errs.Unavailable {
				errList = append(errList, err)
			}
		}
	}
	return n, errors.Join(errList...)
}

// renewOne creates the renewal intent of one due membership (or ends it)
// and returns the intent to drive, if any.
func (s *Service) renewOne(ctx context.Context, id int64) (*Intent, error) {
	var out *Intent
	err := s.db.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		m, err := s.membership(ctx, tx, id, true)
		if err != nil {
			return err
		}
		now := s.now()
		if (m.State != MembershipActive && m.State != MembershipPastDue) || m.NextRenewalAt.After(now) {
			return nil
		}
		if m.CancelAtPeriodEnd {
			m.State, m.EndedReason = MembershipCanceled, "canceled_by_member"
			if err := s.updateMembership(ctx, tx, &m); err != nil {
				return err
			}
			return s.emitMembership(ctx, tx, "membership.canceled", m, true)
		}
		// A renewal already under way is left to the intent jobs.
		var open int
		if err := s.db.queryRow(ctx, tx, `SELECT COUNT(*) FROM payment_intents WHERE membership_id = ? AND period = ?
			AND state IN ('pending', 'requires_action', 'processing')`, m.ID, m.Period+1).Scan(&open); err != nil {
			return err
		}
		m.NextRenewalAt = now.Add(s.cfg.ActionTimeout)
		if err := s.updateMembership(ctx, tx, &m); err != nil {
			return err
		}
		if open > 0 {
			return nil
		}
		iid, err := s.newID(m.MemberID)
		if err != nil {
			return err
		}
		it := Intent{ID: iid, Kind: KindMembership, PayerID: m.MemberID, CreatorID: m.CreatorID, MembershipID: m.ID, Period: m.Period + 1,
			Attempt: m.Attempts + 1, Amount: m.Amount, Fee: s.fee(m.Amount), Currency: m.Currency, PaymentMethod: m.PaymentMethod,
			State: Pending, Provider: m.Provider, Day: unixDay(now), NextCheckAt: now.Add(s.cfg.RecoveryAfter), CreatedAt: now, UpdatedAt: now}
		// Renewals were agreed to when the member joined: they count
		// toward the day's total but are not refused by the limit.
		if _, err := s.db.exec(ctx, tx, `INSERT INTO payment_daily_totals(payer_id, day, currency, amount) VALUES (?, ?, ?, ?)
			ON CONFLICT (payer_id, day, currency) DO UPDATE SET amount = payment_daily_totals.amount + excluded.amount`,
			it.PayerID, it.Day, it.Currency, it.Amount); err != nil {
			return err
		}
		if err := s.insertIntent(ctx, tx, it); err != nil {
			return err
		}
		out = &it
		return s.emitIntent(ctx, tx, "payment.created", it, false)
	})
	return out, err
}
