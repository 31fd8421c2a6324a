package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// State is where a payment intent is in its life. The machine mirrors
// Stripe's PaymentIntent, reduced to what Blueprint acts on:
//
//	pending ──► requires_action ──► processing ──► succeeded
//	   │              │    │             │
//	   │              │    └─────────────┼──► failed
//	   └──────────────┴──► canceled      └──► failed
//
// pending means "recorded, the provider's answer is not known yet": the
// provider may never have been called, or called with an answer lost in a
// crash. Both are resolved the same way, by calling it again with the same
// idempotency key. succeeded, failed and canceled are final; only
// succeeded moves money in the ledger.
type State string

// States.
const (
	Pending        State = "pending"
	RequiresAction State = "requires_action"
	Processing     State = "processing"
	Succeeded      State = "succeeded"
	Failed         State = "failed"
	Canceled       State = "canceled"
)

// Final reports whether s is a final state.
func (s State) Final() bool { return s == Succeeded || s == Failed || s == Canceled }

// CanMove reports whether the machine allows from → to. Moving to the
// same state is not a transition.
func CanMove(from, to State) bool {
	switch from {
	case Pending:
		return to == RequiresAction || to == Processing || to == Succeeded || to == Failed || to == Canceled
	case RequiresAction:
		return to == Processing || to == Succeeded || to == Failed || to == Canceled
	case Processing:
		return to == Succeeded || to == Failed
	}
	return false
}

// Kinds of payment.
const (
	KindTip        = "tip"
	KindMembership = "membership"
)

// Intent is one payment attempt.
type Intent struct {
	ID            int64
	Kind          string
	PayerID       int64
	CreatorID     int64
	VideoID       int64
	MembershipID  int64
	Period        int64
	Attempt       int64
	Amount        int64
	Fee           int64
	Currency      string
	Message       string
	PaymentMethod string
	State         State
	Provider      string
	ProviderRef   string
	ClientSecret  string
	NextAction    string
	FailureReason string
	Day           int64
	Version       int64
	Polls         int64
	NextCheckAt   time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const intentColumns = `id, kind, payer_id, creator_id, COALESCE(video_id, 0), COALESCE(membership_id, 0), COALESCE(period, 0), attempt,
	amount, fee, currency, message, payment_method, state, provider, COALESCE(provider_ref, ''), client_secret, next_action,
	failure_reason, day, version, polls, next_check_at, created_at, updated_at`

func scanIntent(sc interface{ Scan(...any) error }) (Intent, error) {
	var it Intent
	var next, created, updated int64
	err := sc.Scan(&it.ID, &it.Kind, &it.PayerID, &it.CreatorID, &it.VideoID, &it.MembershipID, &it.Period, &it.Attempt,
		&it.Amount, &it.Fee, &it.Currency, &it.Message, &it.PaymentMethod, &it.State, &it.Provider, &it.ProviderRef,
		&it.ClientSecret, &it.NextAction, &it.FailureReason, &it.Day, &it.Version, &it.Polls, &next, &created, &updated)
	it.NextCheckAt, it.CreatedAt, it.UpdatedAt = fromMS(next), fromMS(created), fromMS(updated)
	return it, err
}

func nullInt(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

func nullStr(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func (s *Service) insertIntent(ctx context.Context, tx *sql.Tx, it Intent) error {
	_, err := s.db.exec(ctx, tx, `INSERT INTO payment_intents(id, kind, payer_id, creator_id, video_id, membership_id, period, attempt,
		amount, fee, currency, message, payment_method, state, provider, day, next_check_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		it.ID, it.Kind, it.PayerID, it.CreatorID, nullInt(it.VideoID), nullInt(it.MembershipID), nullInt(it.Period), it.Attempt,
		it.Amount, it.Fee, it.Currency, it.Message, it.PaymentMethod, it.State, it.Provider, it.Day,
		ms(it.NextCheckAt), ms(it.CreatedAt), ms(it.UpdatedAt))
	if err != nil {
		return fmt.Errorf("payment: insert intent: %w", err)
	}
	return nil
}

// intent loads one intent; tx may be nil.
func (s *Service) intent(ctx context.Context, tx *sql.Tx, id int64) (Intent, error) {
	it, err := scanIntent(s.db.queryRow(ctx, tx, `SELECT `+intentColumns+` FROM payment_intents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return it, errs.E(errs.NotFound, "no such payment")
	}
	if err != nil {
		return it, fmt.Errorf("payment: load intent %d: %w", id, err)
	}
	return it, nil
}

// intentByRef finds the intent the provider knows as ref.
func (s *Service) intentByRef(ctx context.Context, tx *sql.Tx, ref string) (Intent, error) {
	it, err := scanIntent(s.db.queryRow(ctx, tx, `SELECT `+intentColumns+` FROM payment_intents WHERE provider = ? AND provider_ref = ?`,
		s.provider.Name(), ref))
	if errors.Is(err, sql.ErrNoRows) {
		return it, errs.E(errs.NotFound, "no such payment")
	}
	if err != nil {
		return it, fmt.Errorf("payment: load intent %s: %w", ref, err)
	}
	return it, nil
}

// IntentView is an intent as the API shows it.
type IntentView struct {
	ID            string      `json:"id"`
	Kind          string      `json:"kind"`
	State         State       `json:"state"`
	Amount        int64       `json:"amount"`
	Fee           int64       `json:"fee"`
	Currency      string      `json:"currency"`
	PayerID       string      `json:"payer_id"`
	CreatorID     string      `json:"creator_id"`
	VideoID       string      `json:"video_id,omitempty"`
	MembershipID  string      `json:"membership_id,omitempty"`
	Message       string      `json:"message,omitempty"`
	Provider      string      `json:"provider"`
	ProviderRef   string      `json:"provider_ref,omitempty"`
	ClientSecret  string      `json:"client_secret,omitempty"`
	NextAction    *NextAction `json:"next_action,omitempty"`
	FailureReason string      `json:"failure_reason,omitempty"`
	CreatedAt     time.Time   `json:"created_at"`
}

// NextAction tells the payer what to do for a payment in requires_action:
// authenticate with the test provider's simulated 3-D Secure page, or
// finish the payment in Stripe's hosted fields with ClientSecret.
type NextAction struct {
	Type string `json:"type"`
	URL  string `json:"url,omitempty"`
}

func idStr(v int64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// view renders it for the API. The client secret and next action are shown
// only to the payer (viewer == payer) and only while the payer must act.
func (it Intent) view(viewer int64) IntentView {
	v := IntentView{
		ID: idStr(it.ID), Kind: it.Kind, State: it.State, Amount: it.Amount, Fee: it.Fee, Currency: it.Currency,
		PayerID: idStr(it.PayerID), CreatorID: idStr(it.CreatorID), VideoID: idStr(it.VideoID), MembershipID: idStr(it.MembershipID),
		Message: it.Message, Provider: it.Provider, ProviderRef: it.ProviderRef, FailureReason: it.FailureReason, CreatedAt: it.CreatedAt,
	}
	if viewer == it.PayerID && it.State == RequiresAction {
		v.ClientSecret = it.ClientSecret
		if it.NextAction != "" {
			v.NextAction = &NextAction{Type: it.NextAction}
			if it.NextAction == "authenticate" {
				v.NextAction.URL = "/wallet?authenticate=" + idStr(it.ID)
			}
		}
	}
	return v
}
