package payment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
)

var tpSecret = []byte("test-provider-webhook-secret")

// event builds a test provider webhook for the provider payment ref.
func event(id, typ string, ref string, intent int64, status payment.State, amount int64) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "created": time.Now().Unix(), "data": map[string]any{
		"object": "payment", "id": ref, "intent_id": fmt.Sprint(intent), "status": status, "amount": amount, "currency": "USD",
	}})
	return b
}

func signed(secret []byte, at time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(payment.SignatureHeader, payment.Sign(secret, at, body))
	return h
}

func TestIncomingWebhooks(t *testing.T) {
	ctx := context.Background()
	// Webhooks are sent by hand here: the provider keeps its own.
	e := newEnv(t, sqliteDB(t), func(_ *payment.Config, tc *testprovider.Config) { tc.Deliver = nil })
	r, err := e.tip(alice, "k", tipReq(500, testprovider.CardVisa))
	if err != nil {
		t.Fatal(err)
	}
	v := decodeIntent(t, r)
	id := mustID(v.ID)
	now := e.clock.Now()
	succeeded := event("evt_1", "payment.succeeded", v.ProviderRef, id, payment.Succeeded, 500)

	refuse := func(name string, body []byte, h http.Header, kind errs.Kind) {
		t.Helper()
		if _, err := e.svc.ReceiveWebhook(ctx, testprovider.Name, body, h); errs.KindOf(err) != kind {
			t.Errorf("%s: %v", name, err)
		}
	}
	refuse("no signature", succeeded, http.Header{}, errs.Unauthorized)
	refuse("wrong secret", succeeded, signed([]byte("not the secret"), now, succeeded), errs.Unauthorized)
	refuse("body changed after signing", []byte(strings.Replace(string(succeeded), "500", "5000", 1)), signed(tpSecret, now, succeeded), errs.Unauthorized)
	refuse("replayed 6 minutes later", succeeded, signed(tpSecret, now.Add(-6*time.Minute), succeeded), errs.Unauthorized)
	refuse("from the future", succeeded, signed(tpSecret, now.Add(6*time.Minute), succeeded), errs.Unauthorized)
	refuse("garbage header", succeeded, http.Header{payment.SignatureHeader: {"t=abc,v1=zz"}}, errs.Unauthorized)
	refuse("signed garbage", []byte("{not json"), signed(tpSecret, now, []byte("{not json")), errs.Invalid)
	if _, err := e.svc.ReceiveWebhook(ctx, "stripe", succeeded, signed(tpSecret, now, succeeded)); errs.KindOf(err) != errs.NotFound {
		t.Errorf("other provider's path: %v", err)
	}
	if got, _ := e.svc.Payment(ctx, alice, id); got.State != payment.Processing {
		t.Fatalf("refused webhooks changed the payment: %s", got.State)
	}

	// The real one applies once; a replay inside the tolerance is a no-op.
	res, err := e.svc.ReceiveWebhook(ctx, testprovider.Name, succeeded, signed(tpSecret, now, succeeded))
	if err != nil || res != payment.WebhookApplied {
		t.Fatalf("genuine webhook: %s, %v", res, err)
	}
	res, err = e.svc.ReceiveWebhook(ctx, testprovider.Name, succeeded, signed(tpSecret, now.Add(time.Minute), succeeded))
	if err != nil || res != payment.WebhookDuplicate {
		t.Fatalf("replay: %s, %v", res, err)
	}
	// An older event arriving late cannot move it back.
	late := event("evt_0", "payment.processing", v.ProviderRef, id, payment.Processing, 500)
	if _, err := e.svc.ReceiveWebhook(ctx, testprovider.Name, late, signed(tpSecret, now, late)); err != nil {
		t.Fatal(err)
	}
	// Nor can a forged "failed" with a fresh ID but a valid signature
	// move a final payment.
	failed := event("evt_2", "payment.failed", v.ProviderRef, id, payment.Failed, 500)
	e.svc.ReceiveWebhook(ctx, testprovider.Name, failed, signed(tpSecret, now, failed))
	if got, _ := e.svc.Payment(ctx, alice, id); got.State != payment.Succeeded {
		t.Fatalf("state %s", got.State)
	}
	if n := e.count(`SELECT COUNT(*) FROM ledger_transactions`); n != 1 {
		t.Fatalf("%d ledger transactions", n)
	}
	// A webhook for another amount is not booked.
	r, _ = e.tip(bob, "k2", tipReq(500, testprovider.CardVisa))
	v2 := decodeIntent(t, r)
	wrong := event("evt_3", "payment.succeeded", v2.ProviderRef, mustID(v2.ID), payment.Succeeded, 50_000)
	e.svc.ReceiveWebhook(ctx, testprovider.Name, wrong, signed(tpSecret, now, wrong))
	if got, _ := e.svc.Payment(ctx, bob, mustID(v2.ID)); got.State != payment.Processing {
		t.Fatalf("wrong-amount webhook applied: %s", got.State)
	}
	// For a payment Blueprint does not know: acknowledged, ignored.
	stray := event("evt_4", "payment.succeeded", "tp_pi_unknown", 0, payment.Succeeded, 500)
	if res, err := e.svc.ReceiveWebhook(ctx, testprovider.Name, stray, signed(tpSecret, now, stray)); err != nil || res != payment.WebhookIgnored {
		t.Fatalf("stray: %s %v", res, err)
	}
}

func TestWebhookCrashBetweenReceiveAndApply(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sqliteDB(t), nil)
	r, _ := e.tip(alice, "k", tipReq(500, testprovider.CardVisa))
	id := mustID(decodeIntent(t, r).ID)
	e.clock.Advance(3 * time.Second)
	e.tp.SettleDue(ctx)
	for _, step := range []string{"webhook_received", "webhook_applied"} {
		if !e.crashAt(step, func() { e.tp.DeliverDue(ctx) }) {
			t.Fatalf("delivery did not pass %s", step)
		}
		e.clock.Advance(time.Minute)
	}
	// The provider redelivers; the event applies exactly once.
	if _, err := e.tp.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.Payment(ctx, alice, id); got.State != payment.Succeeded {
		t.Fatalf("state %s", got.State)
	}
	if n := e.count(`SELECT COUNT(*) FROM ledger_transactions`); n != 1 {
		t.Fatalf("%d ledger transactions", n)
	}
	var undelivered int
	e.tp.DB().QueryRow(`SELECT COUNT(*) FROM tp_events WHERE delivered_at IS NULL`).Scan(&undelivered)
	if undelivered != 0 {
		t.Fatalf("%d events undelivered", undelivered)
	}
}

// receiver is a creator's webhook endpoint (a test HTTP server).
type receiver struct {
	mu     sync.Mutex
	got    []http.Header
	bodies [][]byte
	fail   int // answer 500 this many times first
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.fail > 0 {
			rc.fail--
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		rc.got = append(rc.got, r.Header.Clone())
		rc.bodies = append(rc.bodies, b)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func TestOutgoingWebhooks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sqliteDB(t), nil)
	rc := newReceiver(t)
	rc.fail = 2
	r, err := e.svc.AddEndpoint(ctx, carol, "ep", payment.EndpointRequest{URL: rc.srv.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	var ep payment.EndpointView
	json.Unmarshal(r.Body, &ep)
	if !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("endpoint %+v", ep)
	}
	if r2, _ := e.svc.AddEndpoint(ctx, carol, "ep", payment.EndpointRequest{URL: rc.srv.URL + "/hook"}); string(r2.Body) != string(r.Body) {
		t.Fatal("endpoint creation is not idempotent")
	}
	e.tip(alice, "t1", tipReq(500, testprovider.CardInstant))
	e.tip(alice, "t2", tipReq(700, testprovider.CardDeclined)) // not announced: nothing happened to carol's money
	for range 4 {
		if _, err := e.svc.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(5 * time.Second)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 1 {
		t.Fatalf("%d deliveries", len(rc.got))
	}
	h, body := rc.got[0], rc.bodies[0]
	if h.Get(payment.EventTypeHeader) != "payment.succeeded" || h.Get(payment.EventIDHeader) == "" {
		t.Fatalf("headers %v", h)
	}
	if _, err := payment.Verify([]byte(ep.Secret), h.Get(payment.SignatureHeader), body, e.clock.Now(), time.Minute); err != nil {
		t.Fatalf("signature: %v", err)
	}
	var ev struct {
		Type string
		Data map[string]any
	}
	json.Unmarshal(body, &ev)
	if ev.Data["amount"] != float64(500) || ev.Data["creator_id"] != fmt.Sprint(carol) {
		t.Fatalf("body %s", body)
	}
	list, _ := e.svc.Endpoints(ctx, carol)
	if len(list) != 1 || list[0].Delivered != 1 || list[0].Secret != "" {
		t.Fatalf("endpoints %+v", list)
	}
}

func TestOutgoingWebhooksGiveUp(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sqliteDB(t), func(c *payment.Config, _ *testprovider.Config) { c.WebhookMaxAttempts = 3 })
	rc := newReceiver(t)
	rc.fail = 100
	e.svc.AddEndpoint(ctx, carol, "ep", payment.EndpointRequest{URL: rc.srv.URL})
	e.tip(alice, "t1", tipReq(500, testprovider.CardInstant))
	for range 6 {
		e.svc.DeliverDue(ctx)
		e.clock.Advance(time.Hour)
	}
	if n := e.count(`SELECT COUNT(*) FROM payment_webhook_deliveries WHERE state = 'failed' AND attempts = 3`); n != 1 {
		t.Fatalf("failed deliveries %d", n)
	}
}

func TestEndpointsRefusePrivateAddresses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sqliteDB(t), func(c *payment.Config, _ *testprovider.Config) { c.WebhookAllowPrivate = false })
	for _, u := range []string{
		"http://example.com/hook", "https://127.0.0.1/hook", "https://10.1.2.3/", "https://[::1]/", "https://169.254.169.254/latest",
		"https://localhost/", "https://user:pw@example.com/", "ftp://example.com/", "https:///nohost", "https://100.64.0.1/",
		"https://example.com/" + strings.Repeat("a", 3000),
	} {
		if _, err := e.svc.AddEndpoint(ctx, carol, "ep-"+fmt.Sprint(len(u)), payment.EndpointRequest{URL: u}); errs.KindOf(err) != errs.Invalid {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := e.svc.AddEndpoint(ctx, carol, "ok", payment.EndpointRequest{URL: "https://example.com/hook"}); err != nil {
		t.Fatal(err)
	}
	// A public name that resolves to loopback is refused when dialing.
	rc := newReceiver(t)
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	if err := payment.DialCheck(e.svc, "http://localhost.example.invalid:"+port, "127.0.0.1:"+port); err == nil {
		t.Fatal("dialed a loopback address")
	}
	for i := range 5 {
		e.svc.AddEndpoint(ctx, carol, fmt.Sprint("more", i), payment.EndpointRequest{URL: fmt.Sprintf("https://example.com/%d", i)})
	}
	if list, _ := e.svc.Endpoints(ctx, carol); len(list) != e.cfg.MaxWebhookEndpoints {
		t.Fatalf("%d endpoints, limit %d", len(list), e.cfg.MaxWebhookEndpoints)
	}
}
