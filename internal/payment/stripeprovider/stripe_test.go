package stripeprovider

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment"
)

// fakeStripe serves constructed Stripe API answers and records requests.
type fakeStripe struct {
	mu       sync.Mutex
	requests []recorded
	answer   func(r *http.Request, form url.Values) (int, any)
}

type recorded struct {
	method, path, key string
	form              url.Values
	auth              string
}

func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	if r.Method == http.MethodGet {
		form = r.URL.Query()
	}
	f.mu.Lock()
	f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.Header.Get("Idempotency-Key"), form, r.Header.Get("Authorization")})
	f.mu.Unlock()
	status, body := f.answer(r, form)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_test")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func (f *fakeStripe) last() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func pi(id, status string, meta map[string]string) map[string]any {
	return map[string]any{"id": id, "object": "payment_intent", "amount": 500, "currency": "usd", "status": status,
		"client_secret": id + "_secret_x", "created": 1_800_000_000, "metadata": meta}
}

func newProvider(t *testing.T, f *fakeStripe, retries int64) *Provider {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, err := New(Config{SecretKey: "sk_test_123", PublishableKey: "pk_test_123", WebhookSecret: "whsec_test", APIURL: srv.URL,
		MaxNetworkRetries: stripe.Int64(retries)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChargeRequestShapeAndMapping(t *testing.T) {
	ctx := context.Background()
	f := &fakeStripe{answer: func(r *http.Request, form url.Values) (int, any) {
		return 200, pi("pi_1", "processing", map[string]string{metaIntent: form.Get("metadata[bp_intent_id]"), metaFlow: form.Get("metadata[bp_flow]")})
	}}
	p := newProvider(t, f, 0)
	ch, err := p.Charge(ctx, payment.ChargeRequest{Key: "bp-pi-77", IntentID: 77, Amount: 500, Currency: "USD", PaymentMethod: "pm_card_visa", Description: "tip"})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Ref != "pi_1" || ch.Status != payment.Processing || ch.IntentID != 77 || ch.Currency != "USD" || ch.Amount != 500 {
		t.Fatalf("charge %+v", ch)
	}
	req := f.last()
	if req.method != "POST" || req.path != "/v1/payment_intents" || req.key != "bp-pi-77" || req.auth != "Bearer sk_test_123" {
		t.Fatalf("request %+v", req)
	}
	for k, v := range map[string]string{"amount": "500", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
		"metadata[bp_intent_id]": "77", "metadata[bp_flow]": "server", "automatic_payment_methods[allow_redirects]": "never"} {
		if got := req.form.Get(k); got != v {
			t.Errorf("form %s = %q, want %q", k, got, v)
		}
	}
	// Hosted fields: no payment method, no confirmation.
	if _, err := p.Charge(ctx, payment.ChargeRequest{Key: "bp-pi-78", IntentID: 78, Amount: 500, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if req := f.last(); req.form.Get("confirm") != "" || req.form.Get("payment_method") != "" || req.form.Get("metadata[bp_flow]") != "hosted" {
		t.Fatalf("hosted form %v", req.form)
	}
}

func TestStatusMapping(t *testing.T) {
	for _, c := range []struct {
		status, flow string
		lastErr      bool
		want         payment.State
	}{
		{"requires_payment_method", "hosted", false, payment.RequiresAction},
		{"requires_payment_method", "hosted", true, payment.RequiresAction},
		{"requires_payment_method", "server", true, payment.Failed},
		{"requires_confirmation", "hosted", false, payment.RequiresAction},
		{"requires_action", "server", false, payment.RequiresAction},
		{"processing", "server", false, payment.Processing},
		{"requires_capture", "server", false, payment.Processing},
		{"succeeded", "hosted", false, payment.Succeeded},
		{"canceled", "hosted", false, payment.Canceled},
	} {
		p := &stripe.PaymentIntent{ID: "pi_x", Status: stripe.PaymentIntentStatus(c.status), Metadata: map[string]string{metaFlow: c.flow, metaIntent: "1"}}
		if c.lastErr {
			p.LastPaymentError = &stripe.Error{Code: "card_declined", DeclineCode: "insufficient_funds"}
		}
		ch := toCharge(p)
		if ch.Status != c.want {
			t.Errorf("%s/%s/%v → %s, want %s", c.status, c.flow, c.lastErr, ch.Status, c.want)
		}
		if ch.Status == payment.Failed && ch.FailureReason != "insufficient_funds" {
			t.Errorf("failure reason %q", ch.FailureReason)
		}
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	var status int
	var body any
	f := &fakeStripe{answer: func(*http.Request, url.Values) (int, any) { return status, body }}
	p := newProvider(t, f, 0)
	req := payment.ChargeRequest{Key: "bp-pi-1", IntentID: 1, Amount: 500, Currency: "USD", PaymentMethod: "pm_card_chargeDeclined"}

	// A decline on confirmation is a failed charge, not an error.
	status, body = 402, map[string]any{"error": map[string]any{"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
		"message": "Your card was declined.", "payment_intent": pi("pi_d", "requires_payment_method", map[string]string{metaIntent: "1", metaFlow: "server"})}}
	ch, err := p.Charge(ctx, req)
	if err != nil || ch.Status != payment.Failed || ch.FailureReason != "generic_decline" || ch.Ref != "pi_d" {
		t.Fatalf("decline: %+v, %v", ch, err)
	}
	for _, c := range []struct {
		status int
		err    map[string]any
		temp   bool
		code   string
	}{
		{500, map[string]any{"type": "api_error", "message": "boom"}, true, "api_error"},
		{429, map[string]any{"type": "invalid_request_error", "code": "rate_limit", "message": "slow down"}, true, "rate_limit"},
		{409, map[string]any{"type": "invalid_request_error", "code": "idempotency_key_in_use", "message": "in use"}, true, "idempotency_key_in_use"},
		{400, map[string]any{"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters"}, false, "idempotency_conflict"},
		{400, map[string]any{"type": "invalid_request_error", "code": "parameter_invalid_integer", "message": "bad amount"}, false, "parameter_invalid_integer"},
		{401, map[string]any{"type": "invalid_request_error", "message": "Invalid API Key"}, false, "invalid_request_error"},
	} {
		status, body = c.status, map[string]any{"error": c.err}
		_, err := p.Charge(ctx, req)
		var pe *payment.ProviderError
		if !errors.As(err, &pe) || pe.Temporary != c.temp || pe.Code != c.code || payment.Temporary(err) != c.temp {
			t.Errorf("%d %v: %+v", c.status, c.err, err)
		}
	}
}

func TestRetriesKeepTheKey(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		first := len(keys) == 1
		mu.Unlock()
		if first {
			// The connection drops before an answer: the outcome is
			// unknown, so stripe-go retries with the same key.
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(pi("pi_r", "succeeded", map[string]string{metaIntent: "5"}))
	}))
	defer srv.Close()
	p, err := New(Config{SecretKey: "sk_test", WebhookSecret: "wh", APIURL: srv.URL, MaxNetworkRetries: stripe.Int64(2)})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := p.Charge(ctx, payment.ChargeRequest{Key: "bp-pi-5", IntentID: 5, Amount: 500, Currency: "USD", PaymentMethod: "pm_card_visa"})
	if err != nil || ch.Status != payment.Succeeded {
		t.Fatalf("%+v %v", ch, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 2 || keys[0] != "bp-pi-5" || keys[1] != "bp-pi-5" {
		t.Fatalf("keys %v", keys)
	}
	// Without retries left, a dropped connection is a temporary error.
	p0, _ := New(Config{SecretKey: "sk_test", WebhookSecret: "wh", APIURL: "http://127.0.0.1:1", MaxNetworkRetries: stripe.Int64(0)})
	if _, err := p0.GetCharge(ctx, "pi_x"); !payment.Temporary(err) {
		t.Fatalf("unreachable API: %v", err)
	}
}

func TestRetrieveCancelConfirmList(t *testing.T) {
	ctx := context.Background()
	f := &fakeStripe{answer: func(r *http.Request, form url.Values) (int, any) {
		switch {
		case r.Method == "GET" && r.URL.Path == "/v1/payment_intents/pi_9":
			return 200, pi("pi_9", "succeeded", map[string]string{metaIntent: "9"})
		case r.URL.Path == "/v1/payment_intents/pi_9/cancel":
			return 200, pi("pi_9", "canceled", map[string]string{metaIntent: "9"})
		case r.URL.Path == "/v1/payment_intents/pi_9/confirm":
			return 200, pi("pi_9", "processing", map[string]string{metaIntent: "9"})
		case r.Method == "GET" && r.URL.Path == "/v1/payment_intents":
			if form.Get("starting_after") == "" {
				return 200, map[string]any{"object": "list", "url": "/v1/payment_intents", "has_more": true, "data": []any{
					pi("pi_a", "succeeded", map[string]string{metaIntent: "1"}), pi("pi_other", "succeeded", nil)}}
			}
			return 200, map[string]any{"object": "list", "url": "/v1/payment_intents", "has_more": false, "data": []any{
				pi("pi_b", "canceled", map[string]string{metaIntent: "2"})}}
		case r.URL.Path == "/v1/transfers" && r.Method == "POST":
			return 200, map[string]any{"id": "tr_1", "object": "transfer", "amount": 700, "currency": "usd", "created": 1_800_000_000,
				"metadata": map[string]string{metaPayout: form.Get("metadata[bp_payout_id]")}, "reversed": false}
		}
		return 404, map[string]any{"error": map[string]any{"type": "invalid_request_error", "code": "resource_missing", "message": "no"}}
	}}
	p := newProvider(t, f, 0)
	if ch, err := p.GetCharge(ctx, "pi_9"); err != nil || ch.Status != payment.Succeeded {
		t.Fatalf("get %+v %v", ch, err)
	}
	if ch, err := p.CancelCharge(ctx, "pi_9", "bp-pi-9-cancel"); err != nil || ch.Status != payment.Canceled || f.last().key != "bp-pi-9-cancel" ||
		f.last().form.Get("cancellation_reason") != "abandoned" {
		t.Fatalf("cancel %+v %v %+v", ch, err, f.last())
	}
	if ch, err := p.CompleteAction(ctx, "pi_9", "k", true, "pm_123"); err != nil || ch.Status != payment.Processing || f.last().form.Get("payment_method") != "pm_123" {
		t.Fatalf("confirm %+v %v", ch, err)
	}
	var refs []string
	if err := p.ListCharges(ctx, time.Unix(1_700_000_000, 0), func(c payment.Charge) error { refs = append(refs, c.Ref); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(refs) != "[pi_a pi_b]" {
		t.Fatalf("listed %v", refs)
	}
	if q := f.last().form; q.Get("created[gte]") != "1700000000" {
		t.Fatalf("list query %v", q)
	}
	if _, err := p.GetCharge(ctx, "pi_missing"); err == nil || payment.Temporary(err) {
		t.Fatalf("missing: %v", err)
	}
	po, err := p.Payout(ctx, payment.PayoutRequest{Key: "bp-po-3", PayoutID: 3, Amount: 700, Currency: "USD", Destination: "acct_123"})
	if err != nil || po.Status != payment.PayoutPaid || po.PayoutID != 3 || f.last().form.Get("destination") != "acct_123" || f.last().key != "bp-po-3" {
		t.Fatalf("payout %+v %v %+v", po, err, f.last())
	}
}

func TestValidation(t *testing.T) {
	p, _ := New(Config{SecretKey: "sk", WebhookSecret: "wh"})
	for _, ok := range []string{"", "pm_1AbC", "pm_card_visa"} {
		if err := p.CheckPaymentMethod(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"4242424242424242", "tok_visa", "pm_", "pm_ x", strings.Repeat("pm_a", 100)} {
		if err := p.CheckPaymentMethod(bad); errs.KindOf(err) != errs.Invalid {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if p.CheckDestination("acct_1Abc") != nil || p.CheckDestination("test_bank_1") == nil || p.DefaultDestination(1) != "" {
		t.Fatal("destinations")
	}
	if _, err := New(Config{SecretKey: "sk"}); err == nil {
		t.Fatal("no webhook secret accepted")
	}
}

func stripeSig(t time.Time, payload []byte, secret string) string {
	return fmt.Sprintf("t=%d,v1=%s", t.Unix(), hex.EncodeToString(webhook.ComputeSignature(t, payload, secret)))
}

func TestWebhooks(t *testing.T) {
	p, _ := New(Config{SecretKey: "sk", WebhookSecret: "whsec_test"})
	ev := func(typ string, obj any) []byte {
		b, _ := json.Marshal(map[string]any{"id": "evt_1", "object": "event", "type": typ, "created": 1_800_000_000,
			"api_version": stripe.APIVersion, "data": map[string]any{"object": obj}})
		return b
	}
	h := func(sig string) http.Header { return http.Header{"Stripe-Signature": {sig}} }
	now := time.Now()
	body := ev("payment_intent.succeeded", pi("pi_1", "succeeded", map[string]string{metaIntent: "12", metaFlow: "hosted"}))
	got, err := p.ParseWebhook(body, h(stripeSig(now, body, "whsec_test")), now, 5*time.Minute)
	if err != nil || got.Charge == nil || got.Charge.Status != payment.Succeeded || got.Charge.IntentID != 12 || got.ID != "evt_1" {
		t.Fatalf("%+v %v", got, err)
	}
	failed := ev("payment_intent.payment_failed", pi("pi_2", "requires_payment_method", map[string]string{metaIntent: "13", metaFlow: "server"}))
	if got, err := p.ParseWebhook(failed, h(stripeSig(now, failed, "whsec_test")), now, 5*time.Minute); err != nil || got.Charge.Status != payment.Failed {
		t.Fatalf("failed: %+v %v", got, err)
	}
	foreign := ev("payment_intent.succeeded", pi("pi_3", "succeeded", nil))
	if got, err := p.ParseWebhook(foreign, h(stripeSig(now, foreign, "whsec_test")), now, 5*time.Minute); err != nil || got.Charge != nil {
		t.Fatalf("not Blueprint's: %+v %v", got, err)
	}
	tr := ev("transfer.reversed", map[string]any{"id": "tr_1", "object": "transfer", "amount": 5, "currency": "usd", "reversed": true,
		"metadata": map[string]string{metaPayout: "4"}})
	if got, err := p.ParseWebhook(tr, h(stripeSig(now, tr, "whsec_test")), now, 5*time.Minute); err != nil || got.Payout == nil || got.Payout.Status != payment.PayoutFailed {
		t.Fatalf("transfer: %+v %v", got, err)
	}
	for _, c := range []struct {
		name string
		sig  string
		want error
	}{
		{"forged", stripeSig(now, body, "whsec_other"), payment.ErrBadSignature},
		{"stale", stripeSig(now.Add(-10*time.Minute), body, "whsec_test"), payment.ErrStaleSignature},
		{"missing", "", payment.ErrBadSignatureHeader},
		{"garbage", "t=x,v1=y", payment.ErrBadSignatureHeader},
	} {
		if _, err := p.ParseWebhook(body, h(c.sig), now, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	junk := []byte("not json")
	if _, err := p.ParseWebhook(junk, h(stripeSig(now, junk, "whsec_test")), now, 5*time.Minute); errs.KindOf(err) != errs.Invalid {
		t.Errorf("junk: %v", err)
	}
}

// FuzzWebhook: arbitrary signed bodies never panic the adapter.
func FuzzWebhook(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"bp_intent_id":"1"}}}}`))
	f.Add([]byte(`{"id":"evt_1","type":"transfer.created","data":{"object":{"id":"tr_1","metadata":{"bp_payout_id":"x"}}}}`))
	f.Add([]byte(`{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":"pi_1"}}`))
	p, _ := New(Config{SecretKey: "sk", WebhookSecret: "whsec_test"})
	f.Fuzz(func(t *testing.T, body []byte) {
		now := time.Now()
		ev, err := p.ParseWebhook(body, http.Header{"Stripe-Signature": {stripeSig(now, body, "whsec_test")}}, now, time.Minute)
		if err == nil && ev.ID == "" {
			t.Fatalf("event without ID from %q", body)
		}
	})
}

func TestMembershipSavesForRenewal(t *testing.T) {
	ctx := context.Background()
	f := &fakeStripe{answer: func(r *http.Request, form url.Values) (int, any) {
		if r.URL.Path == "/v1/customers" {
			return 200, map[string]any{"id": "cus_1", "object": "customer"}
		}
		p := pi("pi_m", "succeeded", map[string]string{metaIntent: form.Get("metadata[bp_intent_id]"), metaFlow: form.Get("metadata[bp_flow]")})
		p["customer"] = form.Get("customer")
		p["payment_method"] = "pm_saved"
		p["setup_future_usage"] = form.Get("setup_future_usage")
		return 200, p
	}}
	p := newProvider(t, f, 0)
	ch, err := p.Charge(ctx, payment.ChargeRequest{Key: "bp-pi-1", IntentID: 1, Amount: 500, Currency: "USD", PaymentMethod: "pm_new", SaveForRenewal: true})
	if err != nil || ch.Customer != "cus_1" || ch.PaymentMethod != "pm_saved" {
		t.Fatalf("%+v %v", ch, err)
	}
	f.mu.Lock()
	cus, piReq := f.requests[0], f.requests[1]
	f.mu.Unlock()
	if cus.path != "/v1/customers" || cus.key != "bp-pi-1-customer" || piReq.form.Get("customer") != "cus_1" || piReq.form.Get("setup_future_usage") != "off_session" {
		t.Fatalf("requests %+v / %+v", cus, piReq)
	}
	// The renewal: off-session with the saved customer and card.
	if _, err := p.Charge(ctx, payment.ChargeRequest{Key: "bp-pi-2", IntentID: 2, Amount: 500, Currency: "USD", PaymentMethod: "pm_saved",
		Customer: "cus_1", OffSession: true}); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.form.Get("customer") != "cus_1" || r.form.Get("off_session") != "true" || r.form.Get("payment_method") != "pm_saved" {
		t.Fatalf("renewal form %v", r.form)
	}
}
