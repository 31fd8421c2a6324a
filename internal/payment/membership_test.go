package payment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
)

func decodeSub(t *testing.T, r payment.Reply) payment.SubscribeReply {
	t.Helper()
	var v payment.SubscribeReply
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("reply %d %s: %v", r.Status, r.Body, err)
	}
	return v
}

func (e *env) membership(member int64) payment.MembershipView {
	e.t.Helper()
	list, err := e.svc.Memberships(context.Background(), member, false, 0, 0, 10)
	if err != nil || len(list) == 0 {
		e.t.Fatalf("memberships of %d: %v, %v", member, list, err)
	}
	return list[0]
}

// runJobs advances the clock by d and runs the due jobs once.
func (e *env) runJobs(d time.Duration) {
	e.t.Helper()
	e.clock.Advance(d)
	ctx := context.Background()
	if _, err := e.svc.RenewDue(ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.tp.SettleDue(ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.tp.DeliverDue(ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.DriveDue(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func TestMemberships(t *testing.T) {
	ctx := context.Background()
	sub := payment.SubscribeRequest{CreatorID: fmt.Sprint(carol), PaymentMethod: testprovider.CardInstant}

	t.Run("StartRenewCancel", func(t *testing.T) {
		e := newEnv(t, sqliteDB(t), nil)
		if _, err := e.svc.SetPlan(ctx, carol, "plan", payment.PlanRequest{Amount: 800, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		r, err := e.svc.Subscribe(ctx, alice, "join", sub)
		if err != nil {
			t.Fatal(err)
		}
		v := decodeSub(t, r)
		if r.Status != http.StatusCreated || v.Membership.State != payment.MembershipActive || v.Payment.State != payment.Succeeded ||
			v.Membership.Amount != 800 || v.Membership.Currency != "EUR" || v.Membership.Periods != 1 {
			t.Fatalf("%d %+v", r.Status, v)
		}
		if _, err := e.svc.Subscribe(ctx, alice, "join-again", sub); errs.KindOf(err) != errs.Conflict {
			t.Fatalf("second membership: %v", err)
		}
		// Renewals: two periods later, three payments.
		e.runJobs(e.cfg.MembershipPeriod)
		e.runJobs(e.cfg.MembershipPeriod)
		m := e.membership(alice)
		if m.State != payment.MembershipActive || m.Periods != 3 {
			t.Fatalf("after two renewals %+v", m)
		}
		if got := e.mustBalance(fmt.Sprintf("creator:%d:EUR", carol)); got != 3*760 {
			t.Fatalf("creator balance %d", got)
		}
		// Cancel: the membership runs to the period end, then ends.
		r, err = e.svc.CancelMembership(ctx, alice, "leave", mustID(m.ID))
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("cancel: %s %v", r.Body, err)
		}
		if m := e.membership(alice); m.State != payment.MembershipActive || !m.CancelAtPeriodEnd {
			t.Fatalf("after cancel %+v", m)
		}
		e.runJobs(e.cfg.MembershipPeriod)
		if m := e.membership(alice); m.State != payment.MembershipCanceled || m.Periods != 3 {
			t.Fatalf("after the period %+v", m)
		}
		if n := e.count(`SELECT COUNT(*) FROM payment_intents WHERE membership_id = ?`, mustID(m.ID)); n != 3 {
			t.Fatalf("%d membership payments", n)
		}
		for _, kind := range []string{"membership.started", "membership.renewed", "membership.updated", "membership.canceled"} {
			if e.count(`SELECT COUNT(*) FROM events WHERE kind = ?`, kind) == 0 {
				t.Errorf("no %s event", kind)
			}
		}
		// Joining again after it ended is allowed.
		if _, err := e.svc.Subscribe(ctx, alice, "join-3", sub); err != nil {
			t.Fatal(err)
		}
		e.verifyLedger()
	})

	t.Run("FailedRenewalsEndIt", func(t *testing.T) {
		e := newEnv(t, sqliteDB(t), nil)
		r, err := e.svc.Subscribe(ctx, alice, "join", sub)
		if err != nil {
			t.Fatal(err)
		}
		id := mustID(decodeSub(t, r).Membership.ID)
		// The card stops working.
		if _, err := e.db.W.Exec(`UPDATE memberships SET payment_method = ? WHERE id = ?`, testprovider.CardDeclined, id); err != nil {
			t.Fatal(err)
		}
		e.runJobs(e.cfg.MembershipPeriod)
		if m := e.membership(alice); m.State != payment.MembershipPastDue {
			t.Fatalf("after a failed renewal %+v", m)
		}
		for range e.cfg.MembershipMaxRetries - 1 {
			e.runJobs(e.cfg.MembershipRetry)
		}
		m := e.membership(alice)
		if m.State != payment.MembershipCanceled || m.EndedReason != "renewal_failed" || m.Periods != 1 {
			t.Fatalf("after %d failures %+v", e.cfg.MembershipMaxRetries, m)
		}
		if n := e.count(`SELECT COUNT(*) FROM payment_intents WHERE membership_id = ? AND state = 'failed'`, id); n != e.cfg.MembershipMaxRetries {
			t.Fatalf("%d failed renewals", n)
		}
	})

	t.Run("PastDueRecovers", func(t *testing.T) {
		e := newEnv(t, sqliteDB(t), nil)
		r, _ := e.svc.Subscribe(ctx, alice, "join", sub)
		id := mustID(decodeSub(t, r).Membership.ID)
		e.db.W.Exec(`UPDATE memberships SET payment_method = ? WHERE id = ?`, testprovider.CardInsufficientFunds, id)
		e.runJobs(e.cfg.MembershipPeriod)
		e.db.W.Exec(`UPDATE memberships SET payment_method = ? WHERE id = ?`, testprovider.CardVisa, id)
		e.runJobs(e.cfg.MembershipRetry)
		e.runJobs(5 * time.Second) // settlement
		if m := e.membership(alice); m.State != payment.MembershipActive || m.Periods != 2 {
			t.Fatalf("%+v", m)
		}
	})

	t.Run("FirstPaymentFails", func(t *testing.T) {
		e := newEnv(t, sqliteDB(t), nil)
		bad := sub
		bad.PaymentMethod = testprovider.CardDeclined
		r, err := e.svc.Subscribe(ctx, alice, "join", bad)
		if err != nil {
			t.Fatal(err)
		}
		if v := decodeSub(t, r); v.Membership.State != payment.MembershipIncompleteExpired || v.Payment.State != payment.Failed {
			t.Fatalf("%+v", v)
		}
		// A new try is allowed.
		if _, err := e.svc.Subscribe(ctx, alice, "join-2", sub); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RenewalsSurviveCrashes", func(t *testing.T) {
		e := newEnv(t, sqliteDB(t), nil)
		r, _ := e.svc.Subscribe(ctx, alice, "join", sub)
		id := mustID(decodeSub(t, r).Membership.ID)
		e.clock.Advance(e.cfg.MembershipPeriod)
		if !e.crashAt("provider_committed", func() { e.svc.RenewDue(ctx) }) {
			t.Fatal("renewal did not reach the provider")
		}
		// The next job runs find the renewal in flight, drive it once.
		for range 3 {
			e.runJobs(e.cfg.RecoveryAfter)
		}
		if m := e.membership(alice); m.State != payment.MembershipActive || m.Periods != 2 {
			t.Fatalf("%+v", m)
		}
		if n := e.count(`SELECT COUNT(*) FROM payment_intents WHERE membership_id = ?`, id); n != 2 {
			t.Fatalf("%d payments for 2 periods", n)
		}
		for intent, n := range e.providerCharges() {
			if n != 1 {
				t.Fatalf("intent %d charged %d times", intent, n)
			}
		}
	})
}

func TestPayouts(t *testing.T) {
	ctx := context.Background()
	for _, b := range []struct {
		name string
		open func(*testing.T) *payment.DB
	}{{"SQLite", sqliteDB}, {"Postgres", startPG(t).open}} {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open(t), nil)
			for i := range 4 {
				if _, err := e.tip(alice, fmt.Sprint("t", i), tipReq(10_000, testprovider.CardInstant)); err != nil {
					t.Fatal(err)
				}
			}
			acct := fmt.Sprintf("creator:%d:USD", carol)
			if got := e.mustBalance(acct); got != 38_000 {
				t.Fatalf("balance %d", got)
			}
			if _, err := e.svc.RequestPayout(ctx, carol, "too-much", payment.PayoutAPIRequest{Amount: 38_001, Currency: "USD"}); errs.KindOf(err) != errs.Invalid {
				t.Fatalf("payout over balance: %v", err)
			}
			if _, err := e.svc.RequestPayout(ctx, carol, "tiny", payment.PayoutAPIRequest{Amount: 10, Currency: "USD"}); errs.KindOf(err) != errs.Invalid {
				t.Fatalf("payout under minimum: %v", err)
			}
			r, err := e.svc.RequestPayout(ctx, carol, "p1", payment.PayoutAPIRequest{Amount: 30_000, Currency: "USD"})
			if err != nil {
				t.Fatal(err)
			}
			var pv payment.PayoutView
			json.Unmarshal(r.Body, &pv)
			if pv.State != payment.PayoutInTransit || e.mustBalance(acct) != 8_000 {
				t.Fatalf("payout %+v, balance %d", pv, e.mustBalance(acct))
			}
			// Concurrent payouts cannot spend the same balance twice.
			res := make(chan error, 4)
			for i := range 4 {
				go func() {
					_, err := e.svc.RequestPayout(ctx, carol, fmt.Sprint("race", i), payment.PayoutAPIRequest{Amount: 5_000, Currency: "USD"})
					res <- err
				}()
			}
			ok := 0
			for range 4 {
				if err := <-res; err == nil {
					ok++
				} else if errs.KindOf(err) != errs.Invalid {
					t.Fatal(err)
				}
			}
			if ok != 1 || e.mustBalance(acct) != 3_000 {
				t.Fatalf("%d concurrent payouts accepted, balance %d", ok, e.mustBalance(acct))
			}
			e.settle()
			list, _ := e.svc.Payouts(ctx, carol, 0, 10)
			for _, p := range list {
				if p.State != payment.PayoutPaid {
					t.Fatalf("payout %+v", p)
				}
			}
			if got := e.mustBalance("provider:test:USD"); got != 40_000-35_000 {
				t.Fatalf("provider account %d", got)
			}
			if got := e.mustBalance("payouts_in_transit:test:USD"); got != 0 {
				t.Fatalf("in transit %d", got)
			}
			// A payout to a closed account fails and the money comes back.
			if _, err := e.svc.SetDestination(ctx, carol, "dest", payment.DestinationRequest{Destination: testprovider.FailingDestination}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.RequestPayout(ctx, carol, "p-fail", payment.PayoutAPIRequest{Amount: 2_000, Currency: "USD"}); err != nil {
				t.Fatal(err)
			}
			e.settle()
			if got := e.mustBalance(acct); got != 3_000 {
				t.Fatalf("balance after failed payout %d", got)
			}
			bal, _ := e.svc.Balance(ctx, carol)
			if len(bal.Balances) != 1 || bal.Balances[0].PaidOut != 35_000 || bal.Balances[0].Available != 3_000 || bal.Balances[0].InTransit != 0 {
				t.Fatalf("balance %+v", bal)
			}
			if _, err := e.svc.SetDestination(ctx, carol, "dest-bad", payment.DestinationRequest{Destination: "DE89 3704 0044"}); errs.KindOf(err) != errs.Invalid {
				t.Fatalf("bad destination: %v", err)
			}
			e.verifyLedger()
			rec, err := e.svc.Reconcile(ctx)
			if err != nil || len(rec.Drift) != 0 || rec.Checked != 4+3 {
				t.Fatalf("reconcile: %+v %v", rec, err)
			}
		})
	}
}

func TestPayoutCrashRecovers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sqliteDB(t), nil)
	e.tip(alice, "t", tipReq(50_000, testprovider.CardInstant))
	for i, step := range []string{"payout_reserved", "provider_committed", "provider_answered"} {
		if !e.crashAt(step, func() {
			e.svc.RequestPayout(ctx, carol, fmt.Sprint("p", i), payment.PayoutAPIRequest{Amount: 5_000, Currency: "USD"})
		}) {
			t.Fatalf("payout did not pass %s", step)
		}
	}
	// One retried by the creator, the others by the job.
	if _, err := e.svc.RequestPayout(ctx, carol, "p0", payment.PayoutAPIRequest{Amount: 5_000, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	e.runJobs(e.cfg.RecoveryAfter)
	e.settle()
	e.runJobs(e.cfg.PollInterval)
	var n int
	e.tp.DB().QueryRow(`SELECT COUNT(*) FROM tp_payouts`).Scan(&n)
	if n != 3 {
		t.Fatalf("%d payouts at the provider", n)
	}
	if got := e.mustBalance(fmt.Sprintf("creator:%d:USD", carol)); got != 47_500-15_000 {
		t.Fatalf("balance %d", got)
	}
	list, _ := e.svc.Payouts(ctx, carol, 0, 10)
	for _, p := range list {
		if p.State != payment.PayoutPaid {
			t.Fatalf("%+v", p)
		}
	}
}
