package testprovider

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/payment"
)

var secret = []byte("provider-secret")

func open(t *testing.T, mutate func(*Config)) *Provider {
	t.Helper()
	cfg := Config{Path: filepath.Join(t.TempDir(), "tp.db"), Secret: secret, SettleDelay: 20 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestCardsAndIdempotency(t *testing.T) {
	ctx := context.Background()
	p := open(t, nil)
	want := map[string]payment.State{
		CardVisa: payment.Processing, CardMastercard: payment.Processing, CardInstant: payment.Succeeded,
		CardAuthRequired: payment.RequiresAction, CardDeclined: payment.Failed, CardInsufficientFunds: payment.Failed,
		CardSettlementFails: payment.Processing,
	}
	refs := map[string]string{}
	for i, c := range Cards() {
		req := payment.ChargeRequest{Key: "k-" + c.PaymentMethod, IntentID: int64(i + 1), Amount: 500, Currency: "USD", PaymentMethod: c.PaymentMethod}
		ch, err := p.Charge(ctx, req)
		if err != nil || ch.Status != want[c.PaymentMethod] || ch.IntentID != int64(i+1) {
			t.Fatalf("%s: %+v, %v", c.PaymentMethod, ch, err)
		}
		again, err := p.Charge(ctx, req)
		if err != nil || again.Ref != ch.Ref {
			t.Fatalf("%s: repeat gave %+v, %v", c.PaymentMethod, again, err)
		}
		req.Amount = 501
		var pe *payment.ProviderError
		if _, err := p.Charge(ctx, req); !errors.As(err, &pe) || pe.Code != "idempotency_conflict" || pe.Temporary {
			t.Fatalf("%s: same key, other amount: %v", c.PaymentMethod, err)
		}
		refs[c.PaymentMethod] = ch.Ref
	}
	var n int
	p.DB().QueryRow(`SELECT COUNT(*) FROM tp_payments`).Scan(&n)
	if n != len(Cards()) {
		t.Fatalf("%d payments for %d distinct keys", n, len(Cards()))
	}
	// Off-session, a card that needs authentication fails.
	ch, _ := p.Charge(ctx, payment.ChargeRequest{Key: "off", IntentID: 99, Amount: 500, Currency: "USD", PaymentMethod: CardAuthRequired, OffSession: true})
	if ch.Status != payment.Failed || ch.FailureReason != "authentication_required" {
		t.Fatalf("off-session: %+v", ch)
	}
	// Unknown card: a definitive refusal.
	if _, err := p.Charge(ctx, payment.ChargeRequest{Key: "bad", Amount: 500, Currency: "USD", PaymentMethod: "4242424242424242"}); payment.Temporary(err) || err == nil {
		t.Fatalf("card number: %v", err)
	}
	// Authentication, settlement.
	if ch, err := p.CompleteAction(ctx, refs[CardAuthRequired], "a1", true, ""); err != nil || ch.Status != payment.Processing {
		t.Fatalf("approve: %+v %v", ch, err)
	}
	time.Sleep(30 * time.Millisecond)
	if n, err := p.SettleDue(ctx); err != nil || n != 4 {
		t.Fatalf("settled %d, %v", n, err)
	}
	for pm, st := range map[string]payment.State{CardVisa: payment.Succeeded, CardSettlementFails: payment.Failed, CardAuthRequired: payment.Succeeded} {
		if ch, _ := p.GetCharge(ctx, refs[pm]); ch.Status != st {
			t.Errorf("%s settled to %s", pm, ch.Status)
		}
	}
	var pe *payment.ProviderError
	if _, err := p.CancelCharge(ctx, refs[CardVisa], "c1"); !errors.As(err, &pe) || pe.Code != "payment_intent_unexpected_state" {
		t.Fatalf("cancel succeeded payment: %v", err)
	}
	// visa, mastercard, instant and the authenticated one succeeded.
	if bal, _ := p.Balance(ctx, "USD"); bal != 2000 {
		t.Fatalf("balance %d", bal)
	}
}

func TestPayouts(t *testing.T) {
	ctx := context.Background()
	p := open(t, nil)
	p.Charge(ctx, payment.ChargeRequest{Key: "c", IntentID: 1, Amount: 10_000, Currency: "EUR", PaymentMethod: CardInstant})
	po, err := p.Payout(ctx, payment.PayoutRequest{Key: "p1", PayoutID: 7, Amount: 6_000, Currency: "EUR", Destination: "test_bank_7"})
	if err != nil || po.Status != payment.PayoutInTransit || po.PayoutID != 7 {
		t.Fatalf("%+v %v", po, err)
	}
	over, _ := p.Payout(ctx, payment.PayoutRequest{Key: "p2", PayoutID: 8, Amount: 6_000, Currency: "EUR", Destination: "test_bank_7"})
	if over.Status != payment.PayoutFailed || over.FailureReason != "insufficient_funds" {
		t.Fatalf("over the balance: %+v", over)
	}
	closed, _ := p.Payout(ctx, payment.PayoutRequest{Key: "p3", PayoutID: 9, Amount: 1_000, Currency: "EUR", Destination: FailingDestination})
	time.Sleep(30 * time.Millisecond)
	p.SettleDue(ctx)
	if got, _ := p.GetPayout(ctx, po.Ref); got.Status != payment.PayoutPaid {
		t.Fatalf("payout %+v", got)
	}
	if got, _ := p.GetPayout(ctx, closed.Ref); got.Status != payment.PayoutFailed {
		t.Fatalf("closed account %+v", got)
	}
	if bal, _ := p.Balance(ctx, "EUR"); bal != 4_000 {
		t.Fatalf("balance %d", bal)
	}
	var n int
	p.ListPayouts(ctx, time.Now().Add(-time.Hour), func(payment.ProviderPayout) error { n++; return nil })
	if n != 3 {
		t.Fatalf("listed %d", n)
	}
}

func TestWebhooksAreSignedAndRetried(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var got []payment.Event
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(503)
			return
		}
		ev, err := ParseWebhook(secret, body, r.Header, time.Now(), time.Minute)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		got = append(got, ev)
	}))
	defer srv.Close()
	p := open(t, func(c *Config) { c.WebhookURL = srv.URL })
	ch, _ := p.Charge(ctx, payment.ChargeRequest{Key: "k", IntentID: 42, Amount: 300, Currency: "USD", PaymentMethod: CardVisa})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(runCtx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Type != "payment.processing" || got[1].Type != "payment.succeeded" ||
		got[1].Charge == nil || got[1].Charge.Ref != ch.Ref || got[1].Charge.IntentID != 42 {
		t.Fatalf("events %+v", got)
	}
}

func TestFaultsLoseAnswersNotCharges(t *testing.T) {
	ctx := context.Background()
	p := open(t, func(c *Config) { c.FaultRate = 0.6 })
	temp := 0
	for i := range 50 {
		req := payment.ChargeRequest{Key: "k" + string(rune('a'+i%26)) + string(rune('a'+i/26)), IntentID: int64(i + 1), Amount: 100, Currency: "USD", PaymentMethod: CardInstant}
		for {
			_, err := p.Charge(ctx, req)
			if err == nil {
				break
			}
			if !payment.Temporary(err) {
				t.Fatal(err)
			}
			temp++
		}
	}
	var n int
	p.DB().QueryRow(`SELECT COUNT(*) FROM tp_payments`).Scan(&n)
	if n != 50 || temp == 0 {
		t.Fatalf("%d payments, %d temporary failures", n, temp)
	}
}

// FuzzParseWebhook: arbitrary signed bodies never panic the parser.
func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","type":"payment.succeeded","created":1,"data":{"object":"payment","id":"tp_pi_1","intent_id":"12","status":"succeeded","amount":5,"currency":"USD"}}`))
	f.Add([]byte(`{"id":"evt_1","type":"payout.paid","data":{"object":"payout","id":"tp_po_1","payout_id":"1"}}`))
	f.Add([]byte(`{"id":"evt_1","type":"payment.x","data":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		now := time.Now()
		h := http.Header{}
		h.Set(payment.SignatureHeader, payment.Sign(secret, now, body))
		ev, err := ParseWebhook(secret, body, h, now, time.Minute)
		if err == nil && (ev.ID == "" || (ev.Charge != nil && ev.Charge.Ref == "") || (ev.Payout != nil && ev.Payout.Ref == "")) {
			t.Fatalf("accepted an incomplete event %+v", ev)
		}
	})
}
