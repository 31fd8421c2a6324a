package payment_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/web"
)

// api serves the module with the caller taken from X-Test-User (a stand-in
// for the gateway's signed identity).
func api(t testing.TB, e *env) http.Handler {
	pages, err := web.NewPages()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.svc.Module(pages, nil).Routes(mux, "test")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.Header.Get("X-Test-User"), 10, 64)
		mux.ServeHTTP(w, r.WithContext(account.NewContext(r.Context(), account.Identity{UserID: id, Username: "u"})))
	})
}

type call struct {
	method, path string
	user         int64
	key          string
	body         string
	header       http.Header
}

func do(h http.Handler, c call) *httptest.ResponseRecorder {
	var body io.Reader = http.NoBody
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	r := httptest.NewRequest(c.method, c.path, body)
	if c.user != 0 {
		r.Header.Set("X-Test-User", fmt.Sprint(c.user))
	}
	if c.key != "" {
		r.Header.Set(payment.IdempotencyHeader, c.key)
	}
	for k, v := range c.header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHTTP(t *testing.T) {
	e := newEnv(t, sqliteDB(t), nil)
	h := api(t, e)
	tip := fmt.Sprintf(`{"creator_id":"%d","amount":500,"currency":"USD","payment_method":"pm_card_instant"}`, carol)
	expect := func(c call, status int, contains string) *httptest.ResponseRecorder {
		t.Helper()
		w := do(h, c)
		var compact bytes.Buffer
		if json.Compact(&compact, w.Body.Bytes()) != nil {
			compact.Reset()
			compact.Write(w.Body.Bytes())
		}
		if w.Code != status || !strings.Contains(compact.String(), contains) {
			t.Errorf("%s %s: %d %s (want %d with %q)", c.method, c.path, w.Code, w.Body, status, contains)
		}
		return w
	}
	expect(call{method: "POST", path: "/api/v1/tips", key: "a", body: tip}, 401, "log in")
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, body: tip}, 400, "Idempotency-Key")
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: `{"amount":`}, 400, "not valid JSON")
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: `{"amount":5,"card_number":"4242"}`}, 400, "unknown field")
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: `{"amount":"5"}`}, 400, "not valid JSON")
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: `{"amount":1e3}`}, 400, "")
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: strings.Repeat(" ", 20<<10) + tip}, 400, "over")
	first := expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: tip}, 201, `"state":"succeeded"`)
	again := expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: " " + tip + " "}, 201, `"state":"succeeded"`)
	if again.Header().Get(payment.ReplayedHeader) != "true" || again.Body.String() != first.Body.String() {
		t.Fatalf("replay: %v %s", again.Header(), again.Body)
	}
	expect(call{method: "POST", path: "/api/v1/tips", user: alice, key: "a", body: strings.Replace(tip, "500", "501", 1)}, 409, "different request")
	id := decodeIntent(t, payment.Reply{Body: first.Body.Bytes()}).ID

	expect(call{method: "GET", path: "/api/v1/payments/" + id, user: alice}, 200, `"amount":500`)
	expect(call{method: "GET", path: "/api/v1/payments/" + id, user: carol}, 200, `"amount":500`)
	expect(call{method: "GET", path: "/api/v1/payments/" + id, user: bob}, 404, "no such payment")
	expect(call{method: "GET", path: "/api/v1/payments/" + id}, 401, "")
	expect(call{method: "GET", path: "/api/v1/payments/12x", user: alice}, 404, "")
	expect(call{method: "GET", path: "/api/v1/payments?limit=0", user: alice}, 400, "limit")
	expect(call{method: "GET", path: "/api/v1/payments?role=boss", user: alice}, 400, "role")
	expect(call{method: "GET", path: "/api/v1/payments?role=creator", user: carol}, 200, id)
	expect(call{method: "GET", path: "/api/v1/payments/config"}, 200, `"pm_card_visa"`)
	expect(call{method: "GET", path: fmt.Sprintf("/api/v1/creators/%d/balance", carol), user: carol}, 200, `"available":475`)
	expect(call{method: "GET", path: fmt.Sprintf("/api/v1/creators/%d/balance", carol), user: alice}, 403, "")
	expect(call{method: "POST", path: "/api/v1/payments/" + id + "/confirm", user: alice, key: "c", body: `{"approve":true}`}, 200, `"state":"succeeded"`)
	expect(call{method: "POST", path: "/api/v1/payments/" + id + "/cancel", user: alice, key: "x"}, 409, "can no longer be canceled")
	expect(call{method: "POST", path: "/api/v1/memberships", user: alice, key: "m",
		body: fmt.Sprintf(`{"creator_id":"%d","payment_method":"pm_card_instant"}`, carol)}, 201, `"state":"active"`)
	expect(call{method: "GET", path: "/api/v1/memberships", user: alice}, 200, `"periods_paid":1`)
	expect(call{method: "GET", path: fmt.Sprintf("/api/v1/memberships/plan?creator_id=%d", carol)}, 200, `"amount":500`)
	expect(call{method: "GET", path: "/api/v1/memberships/plan?creator_id=nope"}, 400, "")
	expect(call{method: "PUT", path: "/api/v1/memberships/plan", user: carol, key: "p", body: `{"amount":900,"currency":"GBP"}`}, 200, `"GBP"`)
	expect(call{method: "PUT", path: "/api/v1/memberships/plan", user: carol, key: "p2", body: `{"amount":900,"currency":"gbp"}`}, 400, "ISO 4217")
	expect(call{method: "POST", path: "/api/v1/payouts", user: carol, key: "po", body: `{"amount":100000,"currency":"USD"}`}, 400, "balance")
	expect(call{method: "PUT", path: "/api/v1/payouts/destination", user: carol, key: "d", body: `{"destination":"test_bank_carol"}`}, 200, "test_bank_carol")
	expect(call{method: "POST", path: "/api/v1/payments/webhook-endpoints", user: carol, key: "w", body: `{"url":"http://127.0.0.1:1/x"}`}, 201, "whsec_")
	expect(call{method: "GET", path: "/api/v1/payments/webhook-endpoints", user: carol}, 200, "127.0.0.1:1")

	// Webhooks: forged refused, genuine accepted.
	body := []byte(`{"id":"evt_x","type":"payment.succeeded","created":0,"data":{"object":"payment","id":"tp_pi_zz","intent_id":"1","status":"succeeded","amount":1,"currency":"USD"}}`)
	expect(call{method: "POST", path: "/api/v1/payment-webhooks/test", body: string(body),
		header: http.Header{payment.SignatureHeader: {payment.Sign([]byte("forged"), e.clock.Now(), body)}}}, 401, "signature")
	expect(call{method: "POST", path: "/api/v1/payment-webhooks/test", body: string(body),
		header: http.Header{payment.SignatureHeader: {payment.Sign(tpSecret, e.clock.Now(), body)}}}, 200, "ignored")
	expect(call{method: "POST", path: "/api/v1/payment-webhooks/paypal", body: string(body)}, 404, "")

	// The page.
	w := expect(call{method: "GET", path: "/wallet"}, 303, "")
	if !strings.HasPrefix(w.Header().Get("Location"), "/login") {
		t.Fatalf("redirect to %s", w.Header().Get("Location"))
	}
	expect(call{method: "GET", path: "/wallet?authenticate=123", user: alice}, 200, `data-authenticate="123"`)
	expect(call{method: "GET", path: "/wallet?authenticate=<script>", user: alice}, 200, `data-authenticate=""`)
}

// FuzzTipAPI throws arbitrary bodies and keys at the tip endpoint: the
// answer is a 2xx or a 4xx with a reason, never a 5xx, and the ledger stays
// balanced.
func FuzzTipAPI(f *testing.F) {
	f.Add("k1", fmt.Sprintf(`{"creator_id":"%d","amount":500,"currency":"USD","payment_method":"pm_card_instant"}`, carol))
	f.Add("k2", `{"creator_id":"2001","amount":-1,"currency":"USD","payment_method":"pm_card_visa"}`)
	f.Add("k3", `{"creator_username":"carol","amount":99999999999999999999,"currency":"USD"}`)
	f.Add("k4", `{"video_id":"1","amount":500,"currency":"EUR","payment_method":"pm_card_visa","message":"\u0000"}`)
	f.Add("", `null`)
	f.Add("k5", `[]`)
	f.Add("k6", `{"creator_id":"2001","amount":500,"currency":"USD","payment_method":"pm_card_authenticationRequired","message":"hi"}`)
	e := newEnv(f, openSQLite(f), nil)
	h := api(f, e)
	f.Fuzz(func(t *testing.T, key, body string) {
		if len(body) > 4096 {
			return
		}
		w := do(h, call{method: "POST", path: "/api/v1/tips", user: alice, key: key, body: body})
		if w.Code >= 500 {
			t.Fatalf("%q %q: %d %s", key, body, w.Code, w.Body)
		}
		if w.Code/100 == 4 && !bytes.Contains(w.Body.Bytes(), []byte(`"error"`)) {
			t.Fatalf("4xx without a reason: %s", w.Body)
		}
		tb, err := e.svc.Ledger().Verify(context.Background())
		if err != nil || len(tb.Problems) > 0 {
			t.Fatalf("ledger: %+v, %v", tb, err)
		}
	})
}

// FuzzWebhookReceiver posts arbitrary bodies, signed and unsigned, to the
// webhook endpoint: 2xx or 4xx only.
func FuzzWebhookReceiver(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","type":"payment.succeeded","created":1,"data":{"object":"payment","id":"tp_pi_1","intent_id":"1","status":"succeeded","amount":5,"currency":"USD"}}`), true)
	f.Add([]byte(`{"id":"evt_2","type":"payout.paid","data":{"object":"payout","id":"tp_po_1","payout_id":"x"}}`), true)
	f.Add([]byte(`{}`), true)
	f.Add([]byte(`garbage`), false)
	e := newEnv(f, openSQLite(f), nil)
	api := api(f, e)
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		h := http.Header{}
		if sign {
			h.Set(payment.SignatureHeader, payment.Sign(tpSecret, e.clock.Now(), body))
		}
		w := do(api, call{method: "POST", path: "/api/v1/payment-webhooks/test", body: string(body), header: h})
		if w.Code >= 500 {
			t.Fatalf("%q: %d %s", body, w.Code, w.Body)
		}
		if !sign && w.Code != 401 {
			t.Fatalf("unsigned webhook answered %d", w.Code)
		}
	})
}
