package payment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
)

// TestService runs the payment flows on SQLite and PostgreSQL.
func TestService(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { serviceSuite(t, sqliteDB) })
	t.Run("Postgres", func(t *testing.T) {
		pg := startPG(t)
		serviceSuite(t, pg.open)
	})
}

func decodeIntent(t *testing.T, r payment.Reply) payment.IntentView {
	t.Helper()
	var v payment.IntentView
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("reply %d %s: %v", r.Status, r.Body, err)
	}
	return v
}

func tipReq(amount int64, pm string) payment.TipRequest {
	return payment.TipRequest{CreatorID: fmt.Sprint(carol), Amount: amount, Currency: "USD", PaymentMethod: pm}
}

func serviceSuite(t *testing.T, open func(*testing.T) *payment.DB) {
	ctx := context.Background()

	t.Run("InstantCardBooksTheLedger", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		r, err := e.tip(alice, "k1", tipReq(1000, testprovider.CardInstant))
		if err != nil {
			t.Fatal(err)
		}
		v := decodeIntent(t, r)
		if r.Status != http.StatusCreated || v.State != payment.Succeeded || v.Fee != 50 || v.ProviderRef == "" {
			t.Fatalf("reply %d %+v", r.Status, v)
		}
		if got := e.mustBalance(fmt.Sprintf("creator:%d:USD", carol)); got != 950 {
			t.Fatalf("creator balance %d", got)
		}
		if got := e.mustBalance("fees:USD"); got != 50 {
			t.Fatalf("fees %d", got)
		}
		if got := e.mustBalance("provider:test:USD"); got != 1000 {
			t.Fatalf("provider account %d", got)
		}
		e.verifyLedger()
		if n := e.count(`SELECT COUNT(*) FROM events WHERE kind = 'payment.succeeded' AND subject_id = ?`, mustID(v.ID)); n != 1 {
			t.Fatalf("payment.succeeded events = %d", n)
		}
	})

	t.Run("AsyncSettlementByWebhook", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		r, err := e.tip(alice, "k1", tipReq(500, testprovider.CardVisa))
		if err != nil {
			t.Fatal(err)
		}
		v := decodeIntent(t, r)
		if v.State != payment.Processing {
			t.Fatalf("state %s", v.State)
		}
		b, _ := e.svc.Balance(ctx, carol)
		if len(b.Balances) != 1 || b.Balances[0].Pending != 475 || b.Balances[0].Available != 0 {
			t.Fatalf("balance while settling %+v", b)
		}
		e.settle()
		got, err := e.svc.Payment(ctx, alice, mustID(v.ID))
		if err != nil || got.State != payment.Succeeded {
			t.Fatalf("after settlement: %+v, %v", got, err)
		}
		b, _ = e.svc.Balance(ctx, carol)
		if b.Balances[0].Pending != 0 || b.Balances[0].Available != 475 {
			t.Fatalf("balance after settlement %+v", b)
		}
		// The stored response is the first answer, byte for byte.
		r2, err := e.tip(alice, "k1", tipReq(500, testprovider.CardVisa))
		if err != nil || !r2.Replayed || string(r2.Body) != string(r.Body) || r2.Status != r.Status {
			t.Fatalf("replay: %+v %s, %v", r2, r2.Body, err)
		}
	})

	t.Run("AsyncSettlementByPolling", func(t *testing.T) {
		e := newEnv(t, open(t), func(c *payment.Config, tc *testprovider.Config) { tc.Deliver = nil })
		r, _ := e.tip(alice, "k1", tipReq(500, testprovider.CardVisa))
		id := mustID(decodeIntent(t, r).ID)
		e.settle()
		e.clock.Advance(e.cfg.PollInterval)
		if _, err := e.svc.DriveDue(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.svc.Payment(ctx, alice, id); got.State != payment.Succeeded {
			t.Fatalf("state %s", got.State)
		}
		e.verifyLedger()
	})

	t.Run("DeclinesAndLateFailure", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		for i, c := range []struct{ pm, reason string }{
			{testprovider.CardDeclined, "card_declined"}, {testprovider.CardInsufficientFunds, "insufficient_funds"},
		} {
			r, err := e.tip(alice, fmt.Sprint("d", i), tipReq(700, c.pm))
			if err != nil {
				t.Fatal(err)
			}
			if v := decodeIntent(t, r); v.State != payment.Failed || v.FailureReason != c.reason {
				t.Fatalf("%s: %+v", c.pm, v)
			}
		}
		r, _ := e.tip(alice, "late", tipReq(700, testprovider.CardSettlementFails))
		id := mustID(decodeIntent(t, r).ID)
		e.settle()
		if got, _ := e.svc.Payment(ctx, alice, id); got.State != payment.Failed || got.FailureReason != "settlement_failed" {
			t.Fatalf("late failure: %+v", got)
		}
		tb := e.verifyLedger()
		if tb.Transactions != 0 {
			t.Fatalf("failed payments booked %d ledger transactions", tb.Transactions)
		}
		// Failed payments gave their share of the daily limit back.
		if n := e.count(`SELECT COALESCE(SUM(amount), 0) FROM payment_daily_totals WHERE payer_id = ?`, alice); n != 0 {
			t.Fatalf("daily total after failures = %d", n)
		}
	})

	t.Run("Authentication", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		pay := func(key string) int64 {
			r, err := e.tip(alice, key, tipReq(900, testprovider.CardAuthRequired))
			if err != nil {
				t.Fatal(err)
			}
			v := decodeIntent(t, r)
			if v.State != payment.RequiresAction || v.NextAction == nil || v.NextAction.Type != "authenticate" {
				t.Fatalf("%+v", v)
			}
			return mustID(v.ID)
		}
		approved, declined, abandoned := pay("a"), pay("b"), pay("c")
		r, err := e.svc.Confirm(ctx, alice, "a-confirm", approved, payment.ConfirmRequest{Approve: true})
		if err != nil || decodeIntent(t, r).State != payment.Processing {
			t.Fatalf("approve: %s, %v", r.Body, err)
		}
		// Somebody else cannot confirm it.
		if _, err := e.svc.Confirm(ctx, bob, "x", approved, payment.ConfirmRequest{Approve: true}); errs.KindOf(err) != errs.NotFound {
			t.Fatalf("bob confirming alice's payment: %v", err)
		}
		r, err = e.svc.Confirm(ctx, alice, "b-confirm", declined, payment.ConfirmRequest{Approve: false})
		if v := decodeIntent(t, r); err != nil || v.State != payment.Failed || v.FailureReason != "authentication_failed" {
			t.Fatalf("decline: %s, %v", r.Body, err)
		}
		e.settle()
		e.clock.Advance(e.cfg.ActionTimeout)
		if _, err := e.svc.DriveDue(ctx); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[int64]payment.State{approved: payment.Succeeded, declined: payment.Failed, abandoned: payment.Canceled} {
			if got, _ := e.svc.Payment(ctx, alice, id); got.State != want {
				t.Errorf("payment %d: %s, want %s", id, got.State, want)
			}
		}
		// Canceling what is already final is refused, and that refusal is
		// itself the key's stored answer.
		r1, err := e.svc.Cancel(ctx, alice, "cancel-1", approved)
		r2, err2 := e.svc.Cancel(ctx, alice, "cancel-1", approved)
		if err != nil || err2 != nil || r1.Status != http.StatusConflict || string(r1.Body) != string(r2.Body) || !r2.Replayed {
			t.Fatalf("cancel a succeeded payment: %d %s / %s, %v %v", r1.Status, r1.Body, r2.Body, err, err2)
		}
		e.verifyLedger()
	})

	t.Run("CancelWhileAuthenticating", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		r, _ := e.tip(alice, "a", tipReq(900, testprovider.CardAuthRequired))
		id := mustID(decodeIntent(t, r).ID)
		r, err := e.svc.Cancel(ctx, alice, "cancel", id)
		if err != nil || decodeIntent(t, r).State != payment.Canceled {
			t.Fatalf("cancel: %s, %v", r.Body, err)
		}
		var st string
		e.tp.DB().QueryRow(`SELECT status FROM tp_payments`).Scan(&st)
		if st != "canceled" {
			t.Fatalf("provider state %s", st)
		}
	})

	t.Run("IdempotencyKeys", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		r1, err := e.tip(alice, "same", tipReq(1000, testprovider.CardVisa))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			r, err := e.tip(alice, "same", tipReq(1000, testprovider.CardVisa))
			if err != nil || string(r.Body) != string(r1.Body) || !r.Replayed {
				t.Fatalf("retry: %s, %v", r.Body, err)
			}
		}
		// Another body with the same key.
		_, err = e.tip(alice, "same", tipReq(2000, testprovider.CardVisa))
		if errs.KindOf(err) != errs.Conflict {
			t.Fatalf("same key, other amount: %v", err)
		}
		// The same key for another operation.
		_, err = e.svc.Subscribe(ctx, alice, "same", payment.SubscribeRequest{CreatorID: fmt.Sprint(carol), PaymentMethod: testprovider.CardVisa})
		if errs.KindOf(err) != errs.Conflict {
			t.Fatalf("same key, other operation: %v", err)
		}
		// Keys are per user.
		rb, err := e.tip(bob, "same", tipReq(1000, testprovider.CardVisa))
		if err != nil || rb.Replayed || decodeIntent(t, rb).ID == decodeIntent(t, r1).ID {
			t.Fatalf("bob's key collided with alice's: %s, %v", rb.Body, err)
		}
		for _, bad := range []string{"", strings.Repeat("k", 256), "has space", "tab\t", "ünïcode"} {
			if _, err := e.tip(alice, bad, tipReq(1000, testprovider.CardVisa)); errs.KindOf(err) != errs.Invalid {
				t.Errorf("key %q: %v", bad, err)
			}
		}
		if got := e.providerCharges(); len(got) != 2 {
			t.Fatalf("provider charges %v", got)
		}
	})

	t.Run("ConcurrentRetriesChargeOnce", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		var wg sync.WaitGroup
		bodies := make([]string, 16)
		for i := range bodies {
			wg.Go(func() {
				for {
					r, err := e.tip(alice, "racy", tipReq(1200, testprovider.CardInstant))
					if errs.KindOf(err) == errs.Conflict || errs.KindOf(err) == errs.Unavailable {
						continue // in progress elsewhere: retry, as a client would
					}
					if err != nil {
						t.Error(err)
						return
					}
					bodies[i] = string(r.Body)
					return
				}
			})
		}
		wg.Wait()
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Fatalf("different answers for one key:\n%s\n%s", bodies[0], b)
			}
		}
		if got := e.providerCharges(); len(got) != 1 {
			t.Fatalf("provider charges %v", got)
		}
		if got := e.mustBalance("provider:test:USD"); got != 1200 {
			t.Fatalf("provider account %d", got)
		}
	})

	t.Run("CrashAtEveryStepThenRetry", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		steps := []string{"claimed", "provider_committed", "provider_answered"}
		cards := []string{testprovider.CardInstant, testprovider.CardVisa, testprovider.CardDeclined, testprovider.CardAuthRequired}
		n := 0
		for _, step := range steps {
			for _, card := range cards {
				n++
				key := fmt.Sprintf("crash-%s-%s", step, card)
				if !e.crashAt(step, func() { e.tip(alice, key, tipReq(600, card)) }) {
					t.Fatalf("%s did not pass %s", card, step)
				}
				r, err := e.tip(alice, key, tipReq(600, card))
				if err != nil {
					t.Fatalf("%s/%s retry: %v", step, card, err)
				}
				if v := decodeIntent(t, r); v.State == payment.Pending {
					t.Fatalf("%s/%s: still pending after retry", step, card)
				}
				r2, _ := e.tip(alice, key, tipReq(600, card))
				if string(r2.Body) != string(r.Body) {
					t.Fatalf("%s/%s: retries answer differently", step, card)
				}
			}
		}
		for id, c := range e.providerCharges() {
			if c != 1 {
				t.Fatalf("intent %d charged %d times", id, c)
			}
		}
		if got := len(e.providerCharges()); got != n {
			t.Fatalf("%d charges for %d payments", got, n)
		}
		e.verifyLedger()
	})

	t.Run("AbandonedAfterCrashIsFinishedByTheJob", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		for i, step := range []string{"claimed", "provider_committed", "provider_answered"} {
			e.crashAt(step, func() { e.tip(alice, fmt.Sprint("gone", i), tipReq(600, testprovider.CardInstant)) })
		}
		if n := e.count(`SELECT COUNT(*) FROM payment_intents WHERE state = 'pending'`); n != 3 {
			t.Fatalf("pending = %d", n)
		}
		e.clock.Advance(e.cfg.RecoveryAfter)
		if _, err := e.svc.DriveDue(ctx); err != nil {
			t.Fatal(err)
		}
		if n := e.count(`SELECT COUNT(*) FROM payment_intents WHERE state = 'succeeded'`); n != 3 {
			t.Fatalf("succeeded = %d", n)
		}
		if len(e.providerCharges()) != 3 {
			t.Fatalf("charges %v", e.providerCharges())
		}
		// The client's late retry gets the finished payment.
		r, err := e.tip(alice, "gone0", tipReq(600, testprovider.CardInstant))
		if err != nil || decodeIntent(t, r).State != payment.Succeeded {
			t.Fatalf("late retry: %s %v", r.Body, err)
		}
		rec, err := e.svc.Reconcile(ctx)
		if err != nil || len(rec.Drift) != 0 {
			t.Fatalf("reconcile: %+v, %v", rec.Drift, err)
		}
	})

	t.Run("LostProviderAnswers", func(t *testing.T) {
		e := newEnv(t, open(t), func(_ *payment.Config, tc *testprovider.Config) { tc.FaultRate = 0.5 })
		for i := range 40 {
			key := fmt.Sprint("flaky", i)
			var r payment.Reply
			var err error
			for attempt := 0; ; attempt++ {
				r, err = e.tip(alice, key, tipReq(100, testprovider.CardInstant))
				if errs.KindOf(err) != errs.Unavailable {
					break
				}
				if attempt > 100 {
					t.Fatal("provider never answered")
				}
			}
			if err != nil || decodeIntent(t, r).State != payment.Succeeded {
				t.Fatalf("%s: %s, %v", key, r.Body, err)
			}
		}
		charges := e.providerCharges()
		if len(charges) != 40 {
			t.Fatalf("%d intents charged", len(charges))
		}
		for id, n := range charges {
			if n != 1 {
				t.Fatalf("intent %d charged %d times", id, n)
			}
		}
		if got := e.mustBalance("provider:test:USD"); got != 4000 {
			t.Fatalf("provider account %d", got)
		}
	})

	t.Run("Validation", func(t *testing.T) {
		e := newEnv(t, open(t), nil)
		ok := tipReq(500, testprovider.CardVisa)
		cases := []struct {
			name string
			mod  func(*payment.TipRequest)
			kind errs.Kind
		}{
			{"zero amount", func(r *payment.TipRequest) { r.Amount = 0 }, errs.Invalid},
			{"negative amount", func(r *payment.TipRequest) { r.Amount = -500 }, errs.Invalid},
			{"below minimum", func(r *payment.TipRequest) { r.Amount = 49 }, errs.Invalid},
			{"above maximum", func(r *payment.TipRequest) { r.Amount = 100_001 }, errs.Invalid},
			{"huge", func(r *payment.TipRequest) { r.Amount = 1 << 62 }, errs.Invalid},
			{"lower-case currency", func(r *payment.TipRequest) { r.Currency = "usd" }, errs.Invalid},
			{"unknown currency", func(r *payment.TipRequest) { r.Currency = "ABC" }, errs.Invalid},
			{"currency not accepted", func(r *payment.TipRequest) { r.Currency = "CHF" }, errs.Invalid},
			{"no currency", func(r *payment.TipRequest) { r.Currency = "" }, errs.Invalid},
			{"card number", func(r *payment.TipRequest) { r.PaymentMethod = "4242424242424242" }, errs.Invalid},
			{"no card", func(r *payment.TipRequest) { r.PaymentMethod = "" }, errs.Invalid},
			{"self", func(r *payment.TipRequest) { r.CreatorID = fmt.Sprint(alice) }, errs.Invalid},
			{"unknown creator", func(r *payment.TipRequest) { r.CreatorID = fmt.Sprint(nobody) }, errs.NotFound},
			{"bad creator id", func(r *payment.TipRequest) { r.CreatorID = "12abc" }, errs.Invalid},
			{"two creators", func(r *payment.TipRequest) { r.CreatorUsername = "dave" }, errs.Invalid},
			{"no creator", func(r *payment.TipRequest) { r.CreatorID = "" }, errs.Invalid},
			{"long message", func(r *payment.TipRequest) { r.Message = strings.Repeat("é", 281) }, errs.Invalid},
			{"bad utf-8", func(r *payment.TipRequest) { r.Message = "\xff\xfe" }, errs.Invalid},
		}
		for _, c := range cases {
			req := ok
			c.mod(&req)
			if _, err := e.tip(alice, "v-"+strings.ReplaceAll(c.name, " ", "-"), req); errs.KindOf(err) != c.kind {
				t.Errorf("%s: %v", c.name, err)
			}
		}
		if _, err := e.tip(0, "anon", ok); errs.KindOf(err) != errs.Unauthorized {
			t.Errorf("anonymous: %v", err)
		}
		byName := ok
		byName.CreatorID, byName.CreatorUsername = "", "carol"
		if r, err := e.tip(alice, "by-name", byName); err != nil || decodeIntent(t, r).CreatorID != fmt.Sprint(carol) {
			t.Fatalf("by username: %s, %v", r.Body, err)
		}
		if n := e.count(`SELECT COUNT(*) FROM payment_intents`); n != 1 {
			t.Fatalf("refused requests left %d intents", n-1)
		}
	})

	t.Run("DailyLimit", func(t *testing.T) {
		e := newEnv(t, open(t), func(c *payment.Config, _ *testprovider.Config) { c.DailyLimit = 250_000 })
		for i := range 2 {
			if _, err := e.tip(alice, fmt.Sprint("big", i), tipReq(100_000, testprovider.CardVisa)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.tip(alice, "over", tipReq(60_000, testprovider.CardVisa)); errs.KindOf(err) != errs.Invalid ||
			!strings.Contains(errs.Message(err), "daily limit") {
			t.Fatalf("over the limit: %v", err)
		}
		if _, err := e.tip(alice, "fits", tipReq(50_000, testprovider.CardVisa)); err != nil {
			t.Fatal(err)
		}
		// Other currencies and other payers have their own totals.
		eur := tipReq(60_000, testprovider.CardVisa)
		eur.Currency = "EUR"
		if _, err := e.tip(alice, "eur", eur); err != nil {
			t.Fatal(err)
		}
		if _, err := e.tip(bob, "bob", tipReq(60_000, testprovider.CardVisa)); err != nil {
			t.Fatal(err)
		}
		// Tomorrow is another day.
		e.clock.Advance(24 * time.Hour)
		if _, err := e.tip(alice, "tomorrow", tipReq(60_000, testprovider.CardVisa)); err != nil {
			t.Fatal(err)
		}
	})
}

func mustID(s string) int64 {
	var id int64
	fmt.Sscan(s, &id)
	return id
}
