package payment

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/blueprint-media/blueprint/internal/payment/currency"
)

// Drift kinds reported by reconciliation.
const (
	DriftMissingAtProvider = "missing_at_provider"    // we have a reference the provider does not know
	DriftUnknownLocally    = "unknown_at_blueprint"   // the provider has a payment or payout we do not
	DriftState             = "state_mismatch"         // final states disagree in a way no legal move explains
	DriftAmount            = "amount_mismatch"        // amount or currency differ
	DriftLedgerMissing     = "ledger_missing"         // a succeeded payment or a payout step is not in the ledger
	DriftLedgerAmount      = "ledger_amount_mismatch" // the ledger moved another amount
	DriftLedgerUnexpected  = "ledger_unexpected"      // the ledger has a posting for something that did not happen
	DriftLedgerUnbalanced  = "ledger_unbalanced"      // the trial balance failed
)

// Drift is one discrepancy.
type Drift struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
}

// Reconciliation is the report of one run.
type Reconciliation struct {
	ID       int64     `json:"id"`
	Started  time.Time `json:"started_at"`
	Finished time.Time `json:"finished_at"`
	Window   string    `json:"window"`
	// Checked counts the payments and payouts compared.
	Checked int `json:"checked"`
	// Healed counts records that were behind the provider by a legal
	// move (a lost webhook, a crash before the answer was applied) and
	// were brought up to date by this run.
	Healed int     `json:"healed"`
	Drift  []Drift `json:"drift"`
	// Totals are the succeeded payment amounts per currency at the
	// provider and in the ledger (debits to the provider account).
	ProviderTotals map[string]int64 `json:"provider_totals"`
	LedgerTotals   map[string]int64 `json:"ledger_totals"`
	TrialBalance   TrialBalance     `json:"trial_balance"`
}

// Reconcile compares every payment and payout of the last ReconcileWindow
// with the provider's records and the ledger, heals what is merely behind
// (applying the provider's state through the state machine), reports the
// rest as drift, and stores the report.
func (s *Service) Reconcile(ctx context.Context) (Reconciliation, error) {
	r := Reconciliation{Started: s.now(), Window: s.cfg.ReconcileWindow.String(), Drift: []Drift{},
		ProviderTotals: map[string]int64{}, LedgerTotals: map[string]int64{}}
	since := r.Started.Add(-s.cfg.ReconcileWindow)
	charges := map[string]Charge{}
	err := s.provider.ListCharges(ctx, since, func(c Charge) error {
		charges[c.Ref] = c
		return nil
	})
	if err != nil {
		s.m.reconciled.WithLabelValues("error").Inc()
		return r, fmt.Errorf("payment: reconcile: list provider payments: %w", err)
	}
	drift := func(kind, subject, format string, args ...any) {
		r.Drift = append(r.Drift, Drift{Kind: kind, Subject: subject, Detail: fmt.Sprintf(format, args...)})
	}
	// Our payments of the window, and the provider's that match them.
	rows, err := s.db.query(ctx, nil, `SELECT `+intentColumns+` FROM payment_intents WHERE provider = ? AND created_at >= ? ORDER BY id`,
		s.provider.Name(), ms(since))
	if err != nil {
		return r, fmt.Errorf("payment: reconcile: %w", err)
	}
	var intents []Intent
	for rows.Next() {
		it, err := scanIntent(rows)
		if err != nil {
			rows.Close()
			return r, fmt.Errorf("payment: reconcile: %w", err)
		}
		intents = append(intents, it)
	}
	rows.Close()
	seen := map[string]bool{}
	for _, it := range intents {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.Checked++
		subject := "payment " + idStr(it.ID)
		ch, ok := charges[it.ProviderRef]
		if it.ProviderRef == "" {
			// Not known at the provider under a reference yet: the
			// provider may still have it under our idempotency key.
			for _, c := range charges {
				if c.IntentID == it.ID {
					ch, ok = c, true
					break
				}
			}
		}
		if ok {
			seen[ch.Ref] = true
		}
		switch {
		case !ok && it.ProviderRef != "":
			drift(DriftMissingAtProvider, subject, "provider reference %s not found at %s", it.ProviderRef, s.provider.Name())
		case !ok:
			// Never reached the provider: pending (the job will drive it)
			// or refused before it was created.
			if it.State == Succeeded || it.State == Processing {
				drift(DriftMissingAtProvider, subject, "%s without a provider reference", it.State)
			}
		default:
			if ch.Amount != it.Amount || ch.Currency != it.Currency {
				drift(DriftAmount, subject, "ours %s, provider %s", currency.Format(it.Amount, it.Currency), currency.Format(ch.Amount, ch.Currency))
				break
			}
			if ch.Status != it.State {
				if CanMove(it.State, ch.Status) {
					healed, err := s.apply(ctx, it.ID, &ch, nil)
					if err != nil {
						return r, fmt.Errorf("payment: reconcile: heal %s: %w", subject, err)
					}
					if healed.State == ch.Status {
						r.Healed++
						s.m.recovered.WithLabelValues("reconciliation").Inc()
						it = healed
					}
				}
				if ch.Status != it.State && !(it.State == Processing && ch.Status == Processing) {
					drift(DriftState, subject, "ours %s, provider %s", it.State, ch.Status)
				}
			}
		}
		if ch.Status == Succeeded && ok && ch.Amount == it.Amount {
			r.ProviderTotals[it.Currency] += ch.Amount
		}
		posted, exists, err := s.ledger.postedAmount(ctx, "payment:"+idStr(it.ID))
		if err != nil {
			return r, err
		}
		switch {
		case it.State == Succeeded && !exists:
			drift(DriftLedgerMissing, subject, "succeeded but not in the ledger")
		case it.State == Succeeded && posted != it.Amount:
			drift(DriftLedgerAmount, subject, "ledger moved %s, payment is %s", currency.Format(posted, it.Currency), currency.Format(it.Amount, it.Currency))
		case it.State != Succeeded && exists:
			drift(DriftLedgerUnexpected, subject, "ledger has a posting for a payment that is %s", it.State)
		}
		if exists {
			r.LedgerTotals[it.Currency] += posted
		}
	}
	// Provider payments we did not match.
	for ref, ch := range charges {
		if seen[ref] {
			continue
		}
		var found bool
		if ch.IntentID != 0 {
			if it, err := s.intent(ctx, nil, ch.IntentID); err == nil && (it.ProviderRef == "" || it.ProviderRef == ref) {
				found = true
				if it.State != ch.Status && !CanMove(it.State, ch.Status) {
					drift(DriftState, "payment "+idStr(it.ID), "ours %s, provider %s", it.State, ch.Status)
				}
			}
		}
		if !found {
			if _, err := s.intentByRef(ctx, nil, ref); err == nil {
				found = true
			}
		}
		if !found {
			drift(DriftUnknownLocally, "provider payment "+ref, "%s %s, not made by Blueprint (or its record is lost)", ch.Status, currency.Format(ch.Amount, ch.Currency))
		}
	}
	if err := s.reconcilePayouts(ctx, since, &r, drift); err != nil {
		return r, err
	}
	tb, err := s.ledger.Verify(ctx)
	if err != nil {
		return r, err
	}
	r.TrialBalance = tb
	for _, p := range tb.Problems {
		drift(DriftLedgerUnbalanced, "ledger", "%s", p)
	}
	sort.SliceStable(r.Drift, func(i, j int) bool { return r.Drift[i].Kind < r.Drift[j].Kind })
	r.Finished = s.now()
	if err := s.saveReconciliation(ctx, &r); err != nil {
		return r, err
	}
	s.m.drift.Set(float64(len(r.Drift)))
	if len(r.Drift) > 0 {
		s.m.reconciled.WithLabelValues("drift").Inc()
		s.logger.Warn("payment: reconciliation found drift", "drift", len(r.Drift), "checked", r.Checked, "healed", r.Healed)
	} else {
		s.m.reconciled.WithLabelValues("clean").Inc()
	}
	return r, nil
}

func (s *Service) reconcilePayouts(ctx context.Context, since time.Time, r *Reconciliation, drift func(kind, subject, format string, args ...any)) error {
	theirs := map[string]ProviderPayout{}
	if err := s.provider.ListPayouts(ctx, since, func(p ProviderPayout) error {
		theirs[p.Ref] = p
		return nil
	}); err != nil {
		return fmt.Errorf("payment: reconcile: list provider payouts: %w", err)
	}
	rows, err := s.db.query(ctx, nil, `SELECT `+payoutColumns+` FROM payouts WHERE provider = ? AND created_at >= ? ORDER BY id`, s.provider.Name(), ms(since))
	if err != nil {
		return fmt.Errorf("payment: reconcile: %w", err)
	}
	var ours []Payout
	for rows.Next() {
		p, err := scanPayout(rows)
		if err != nil {
			rows.Close()
			return err
		}
		ours = append(ours, p)
	}
	rows.Close()
	seen := map[string]bool{}
	for _, p := range ours {
		r.Checked++
		subject := "payout " + idStr(p.ID)
		pp, ok := theirs[p.ProviderRef]
		if !ok {
			for _, x := range theirs {
				if x.PayoutID == p.ID {
					pp, ok = x, true
					break
				}
			}
		}
		if ok {
			seen[pp.Ref] = true
		}
		switch {
		case !ok && p.State != PayoutPending && p.State != PayoutFailed:
			drift(DriftMissingAtProvider, subject, "%s but unknown at %s", p.State, s.provider.Name())
		case ok && (pp.Amount != p.Amount || pp.Currency != p.Currency):
			drift(DriftAmount, subject, "ours %s, provider %s", currency.Format(p.Amount, p.Currency), currency.Format(pp.Amount, pp.Currency))
		case ok && pp.Status != p.State:
			if canMovePayout(p.State, pp.Status) {
				var out Payout
				err := s.db.tx(ctx, func(tx *sql.Tx) error {
					var err error
					out, err = s.applyPayoutTx(ctx, tx, p.ID, &pp)
					return err
				})
				if err != nil && !errors.Is(err, errStale) {
					return fmt.Errorf("payment: reconcile: heal %s: %w", subject, err)
				}
				if out.State == pp.Status {
					r.Healed++
					s.m.recovered.WithLabelValues("reconciliation").Inc()
					p = out
				}
			}
			if pp.Status != p.State {
				drift(DriftState, subject, "ours %s, provider %s", p.State, pp.Status)
			}
		}
		for ref, want := range map[string]bool{
			"payout:" + idStr(p.ID):        true,
			"payout_paid:" + idStr(p.ID):   p.State == PayoutPaid,
			"payout_failed:" + idStr(p.ID): p.State == PayoutFailed,
		} {
			amount, exists, err := s.ledger.postedAmount(ctx, ref)
			if err != nil {
				return err
			}
			switch {
			case want && !exists:
				drift(DriftLedgerMissing, subject, "no ledger transaction %s", ref)
			case !want && exists:
				drift(DriftLedgerUnexpected, subject, "ledger transaction %s for a payout that is %s", ref, p.State)
			case exists && amount != p.Amount:
				drift(DriftLedgerAmount, subject, "ledger transaction %s moved %s, payout is %s", ref, currency.Format(amount, p.Currency), currency.Format(p.Amount, p.Currency))
			}
		}
	}
	for ref, pp := range theirs {
		if seen[ref] {
			continue
		}
		var n int
		if err := s.db.queryRow(ctx, nil, `SELECT COUNT(*) FROM payouts WHERE id = ? OR (provider = ? AND provider_ref = ?)`, pp.PayoutID, s.provider.Name(), ref).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			drift(DriftUnknownLocally, "provider payout "+ref, "%s %s, not made by Blueprint", pp.Status, currency.Format(pp.Amount, pp.Currency))
		}
	}
	return nil
}

func (s *Service) saveReconciliation(ctx context.Context, r *Reconciliation) error {
	summary, _ := json.Marshal(map[string]any{"window": r.Window, "provider_totals": r.ProviderTotals, "ledger_totals": r.LedgerTotals,
		"trial_balance": r.TrialBalance})
	return s.db.tx(ctx, func(tx *sql.Tx) error {
		if err := s.db.queryRow(ctx, tx, `INSERT INTO payment_reconciliations(started_at, finished_at, checked, drift, healed, summary)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, ms(r.Started), ms(r.Finished), r.Checked, len(r.Drift), r.Healed, string(summary)).Scan(&r.ID); err != nil {
			return fmt.Errorf("payment: save reconciliation: %w", err)
		}
		for _, d := range r.Drift {
			if _, err := s.db.exec(ctx, tx, `INSERT INTO payment_drift(run_id, kind, subject, detail) VALUES (?, ?, ?, ?)`, r.ID, d.Kind, d.Subject, d.Detail); err != nil {
				return fmt.Errorf("payment: save reconciliation: %w", err)
			}
		}
		// Keep the last 500 runs.
		_, err := s.db.exec(ctx, tx, `DELETE FROM payment_reconciliations WHERE id <= ?`, r.ID-500)
		return err
	})
}

// LastReconciliation returns the newest stored report (ID 0 if none).
func (s *Service) LastReconciliation(ctx context.Context) (Reconciliation, error) {
	var r Reconciliation
	var started, finished int64
	var drift int
	var summary string
	err := s.db.queryRow(ctx, nil, `SELECT id, started_at, finished_at, checked, drift, healed, summary FROM payment_reconciliations
		ORDER BY id DESC LIMIT 1`).Scan(&r.ID, &started, &finished, &r.Checked, &drift, &r.Healed, &summary)
	if errors.Is(err, sql.ErrNoRows) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("payment: last reconciliation: %w", err)
	}
	r.Started, r.Finished = fromMS(started), fromMS(finished)
	var sum struct {
		Window         string           `json:"window"`
		ProviderTotals map[string]int64 `json:"provider_totals"`
		LedgerTotals   map[string]int64 `json:"ledger_totals"`
		TrialBalance   TrialBalance     `json:"trial_balance"`
	}
	json.Unmarshal([]byte(summary), &sum)
	r.Window, r.ProviderTotals, r.LedgerTotals, r.TrialBalance = sum.Window, sum.ProviderTotals, sum.LedgerTotals, sum.TrialBalance
	rows, err := s.db.query(ctx, nil, `SELECT kind, subject, detail FROM payment_drift WHERE run_id = ? ORDER BY id LIMIT 1000`, r.ID)
	if err != nil {
		return r, fmt.Errorf("payment: last reconciliation: %w", err)
	}
	defer rows.Close()
	r.Drift = []Drift{}
	for rows.Next() {
		var d Drift
		if err := rows.Scan(&d.Kind, &d.Subject, &d.Detail); err != nil {
			return r, err
		}
		r.Drift = append(r.Drift, d)
	}
	return r, rows.Err()
}
