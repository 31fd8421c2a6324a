package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// chaosProcess is the blueprint binary under test, restarted after every
// kill on the same ports and data directory.
type chaosProcess struct {
	t               *testing.T
	dir, http, adm  string
	args            []string
	mu              sync.Mutex
	cmd             *exec.Cmd
	exited          chan struct{}
	starts          int
	externallyKills int
}

func (p *chaosProcess) start(env ...string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	logf, err := os.OpenFile(filepath.Join(p.dir, "process.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %d %v\n", p.starts, env)
	cmd := exec.Command(blueprintBinary(p.t), append(p.args, "--log-format", "text")...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	// Ready when the admin listener says so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.adm + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-exited:
			// A failpoint can fire during start-up (jobs resume at once).
			return
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("blueprint did not become ready; log in %s", filepath.Join(p.dir, "process.log"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *chaosProcess) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (p *chaosProcess) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// order is one tip a client makes, retried with the same key until it gets
// an answer that is not a 5xx.
type order struct {
	key       string
	payer     int
	creator   int
	amount    int64
	card      string
	approve   bool // for authentication cards: approve (true) or decline
	abandon   bool // for authentication cards: never answer (the job cancels it)
	first     client.Reply
	paymentID string
}

// chaosSteps are the failpoints of the payment path, in the order of a
// payment's life: after the idempotency key and intent are committed;
// after the provider committed the charge but before it answered; after
// the provider answered but before Blueprint applied it; after Blueprint
// committed but before it answered the client; in the webhook receiver
// after the signature check, and after applying; and in the provider's
// settlement after it committed but before it sent the webhook.
var chaosSteps = []string{"claimed", "provider_committed", "provider_answered", "committed", "webhook_received", "webhook_applied", "provider_settled"}

// TestPaymentsChaos runs the blueprint binary as a process and kills it
// with SIGKILL at every step of the payment path, over and over, while
// clients pay and retry with the same idempotency keys; then it lets the
// process recover and checks: no intent charged twice, every intent final
// and agreeing with the provider, the ledger balanced and matching the
// provider to the cent, every retry answered with the first response byte
// for byte, and reconciliation finding no drift.
func TestPaymentsChaos(t *testing.T) {
	orders := 2000
	if v := os.Getenv("BLUEPRINT_TEST_CHAOS_ORDERS"); v != "" {
		orders, _ = strconv.Atoi(v)
	}
	testStart := time.Now()
	dir := t.TempDir()
	p := &chaosProcess{t: t, dir: dir, http: freeAddr(t), adm: freeAddr(t)}
	p.args = []string{"--roles", "gateway,frontend,broker", "--http-addr", p.http, "--admin-addr", p.adm, "--data-dir", dir,
		"--log-level", "warn", "--gateway-rate-limit", "1000000", "--gateway-rate-burst", "1000000", "--lock-ttl", "500ms",
		"--lb-health-interval", "200ms", "--payment-test-provider-settle-delay", "100ms", "--payment-recovery-after", "300ms",
		"--payment-poll-interval", "200ms", "--payment-action-timeout", "2s", "--payment-daily-limit", "1000000000",
		"--payment-max-amount", "100000"}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "process.log"))
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("process log (tail):\n%s", b)
		}
	})
	p.start()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	base := "http://" + p.http

	// Accounts: 8 payers, 3 creators.
	signup := func(name string) *client.Client {
		c := client.New(base)
		c.HTTP = &http.Client{Timeout: 10 * time.Second}
		if _, err := c.SignUp(ctx, name, name+"@example.com", "password-"+name); err != nil {
			t.Fatal(err)
		}
		if err := c.Login(ctx, name, "password-"+name); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var payers []*client.Client
	var creators []string
	for i := range 8 {
		payers = append(payers, signup(fmt.Sprintf("payer%d", i)))
	}
	for i := range 3 {
		c := signup(fmt.Sprintf("creator%d", i))
		u, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		creators = append(creators, u.ID)
	}

	setupTime := time.Since(testStart)
	// The orders.
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	cards := []struct {
		pm     string
		weight int
	}{{"pm_card_visa", 40}, {"pm_card_instant", 25}, {"pm_card_authenticationRequired", 15}, {"pm_card_chargeDeclined", 8},
		{"pm_card_chargeDeclinedInsufficientFunds", 4}, {"pm_card_settlementFails", 8}}
	all := make([]*order, orders)
	for i := range all {
		w := rng.IntN(100)
		card := cards[0].pm
		for _, c := range cards {
			if w < c.weight {
				card = c.pm
				break
			}
			w -= c.weight
		}
		all[i] = &order{key: fmt.Sprintf("order-%d", i), payer: i % len(payers), creator: i % len(creators),
			amount: 100 + int64(rng.IntN(9900)), card: card, approve: rng.IntN(3) != 0, abandon: rng.IntN(6) == 0}
	}

	// send retries one call with one key until an answer that is not a
	// 5xx or an "in progress" conflict arrives.
	var attempts, lost atomic.Int64
	send := func(c *client.Client, method, path, key string, in any) client.Reply {
		for {
			if ctx.Err() != nil {
				t.Error("out of time")
				return client.Reply{}
			}
			attempts.Add(1)
			r, err := c.DoIdempotent(ctx, method, path, key, in)
			if err == nil && r.Status < 500 && !(r.Status == 409 && bytes.Contains(r.Body, []byte("in progress"))) {
				return r
			}
			lost.Add(1)
			time.Sleep(time.Duration(20+rand.IntN(30)) * time.Millisecond)
		}
	}
	var mismatches, conflictsOK atomic.Int64
	work := func(o *order, i int) {
		c := payers[o.payer]
		body := map[string]any{"creator_id": creators[o.creator], "amount": o.amount, "currency": "USD", "payment_method": o.card}
		o.first = send(c, "POST", "/api/v1/tips", o.key, body)
		if o.first.Status != 201 {
			t.Errorf("%s: %d %s", o.key, o.first.Status, o.first.Body)
			return
		}
		var pv client.Payment
		json.Unmarshal(o.first.Body, &pv)
		o.paymentID = pv.ID
		// A retry of an answered request gets the same bytes.
		if again := send(c, "POST", "/api/v1/tips", o.key, body); again.Status != o.first.Status || !bytes.Equal(again.Body, o.first.Body) {
			mismatches.Add(1)
			t.Errorf("%s: retry answered differently:\n%s\n%s", o.key, o.first.Body, again.Body)
		}
		// The key with another amount is refused.
		if i%10 == 0 {
			other := map[string]any{"creator_id": creators[o.creator], "amount": o.amount + 1, "currency": "USD", "payment_method": o.card}
			if r := send(c, "POST", "/api/v1/tips", o.key, other); r.Status != 409 {
				t.Errorf("%s: key reused with another amount: %d %s", o.key, r.Status, r.Body)
			} else {
				conflictsOK.Add(1)
			}
		}
		if pv.State == "requires_action" && !o.abandon {
			r := send(c, "POST", "/api/v1/payments/"+pv.ID+"/confirm", o.key+"-confirm", map[string]any{"approve": o.approve})
			if r.Status != 200 {
				t.Errorf("%s confirm: %d %s", o.key, r.Status, r.Body)
			}
			if again := send(c, "POST", "/api/v1/payments/"+pv.ID+"/confirm", o.key+"-confirm", map[string]any{"approve": o.approve}); !bytes.Equal(again.Body, r.Body) {
				mismatches.Add(1)
				t.Errorf("%s confirm: retry answered differently", o.key)
			}
		}
	}
	queue := make(chan int, len(all))
	for i := range all {
		queue <- i
	}
	close(queue)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range queue {
				work(all[i], i)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	// Kill the process, again and again: at a failpoint chosen in turn,
	// and every fifth round at a random moment from outside.
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	// Four rounds per failpoint bound the test's time (each restart of the
	// whole platform takes a few hundred milliseconds).
	maxRounds := 4 * len(chaosSteps)
	rounds := 0
	start := time.Now()

chaos:
	for {
		// Round 0 (the clean process of the sign-ups) and every fifth
		// round end with a kill from outside at a random moment; the
		// others at their failpoint (or after 3 s if it was not reached).
		random := rounds%5 == 0
		wait := 3 * time.Second
		if random {
			wait = time.Duration(200+rng.IntN(800)) * time.Millisecond
		}
		select {
		case <-finished:
			break chaos
		case <-exited:
		case <-time.After(wait):
			if random {
				p.externallyKills++
			}
			p.kill()
		}
		rounds++
		if rounds == maxRounds {
			// Budget spent: the clients finish on a process left alone.
			p.start()
			<-finished
			break chaos
		}
		env := []string{"BLUEPRINT_TEST_PAYMENT_FAULTS=0.02"}
		if rounds%5 != 0 {
			step := chaosSteps[rounds%len(chaosSteps)]
			env = append(env, fmt.Sprintf("BLUEPRINT_TEST_PAYMENT_CRASH=%s@%d", step, 5+rng.IntN(40)))
		}
		p.start(env...)
		p.mu.Lock()
		exited = p.exited
		p.mu.Unlock()
	}
	chaosTime := time.Since(start)

	// Recovery: a process without failpoints finishes everything.
	p.kill()
	p.start()
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tpdb, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "payment-testprovider.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer tpdb.Close()
	count := func(q *sql.DB, query string, args ...any) int {
		var n int
		if err := q.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	for {
		open := count(db.R, `SELECT COUNT(*) FROM payment_intents WHERE state NOT IN ('succeeded', 'failed', 'canceled')`)
		if open == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after recovery %d intents are not final", open)
		}
		time.Sleep(100 * time.Millisecond)
	}

	recoveryTime := time.Since(start) - chaosTime
	// Invariants.
	intents := count(db.R, `SELECT COUNT(*) FROM payment_intents`)
	if intents != orders {
		t.Errorf("%d intents for %d orders", intents, orders)
	}
	if n := count(db.R, `SELECT COUNT(*) FROM payment_idempotency WHERE operation = 'tip'`); n != orders {
		t.Errorf("%d tip keys for %d orders", n, orders)
	}
	if n := count(tpdb, `SELECT COUNT(*) FROM (SELECT intent_id FROM tp_payments GROUP BY intent_id HAVING COUNT(*) > 1)`); n != 0 {
		t.Errorf("DOUBLE CHARGES: %d intents charged more than once", n)
	}
	// Every intent agrees with the provider.
	provider := map[int64][2]any{}
	rows, err := tpdb.QueryContext(ctx, `SELECT intent_id, status, amount FROM tp_payments`)
	if err != nil {
		t.Fatal(err)
	}
	var providerSucceeded int64
	for rows.Next() {
		var id, amount int64
		var st string
		rows.Scan(&id, &st, &amount)
		provider[id] = [2]any{st, amount}
		if st == "succeeded" {
			providerSucceeded += amount
		}
	}
	rows.Close()
	rows, err = db.R.QueryContext(ctx, `SELECT id, state, amount FROM payment_intents`)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	var oursSucceeded int64
	disagree := 0
	for rows.Next() {
		var id, amount int64
		var st string
		rows.Scan(&id, &st, &amount)
		states[st]++
		if st == "succeeded" {
			oursSucceeded += amount
		}
		pv, ok := provider[id]
		if !ok {
			disagree++
			t.Errorf("intent %d (%s) unknown at the provider", id, st)
			continue
		}
		if pv[0] != st || pv[1] != amount {
			disagree++
			if disagree < 10 {
				t.Errorf("intent %d: ours %s %d, provider %v", id, st, amount, pv)
			}
		}
	}
	rows.Close()
	if len(provider) != intents {
		t.Errorf("provider has %d payments for %d intents", len(provider), intents)
	}
	// The ledger.
	ledger := payment.NewLedger(&payment.DB{W: db.W, R: db.R, Dialect: payment.SQLite, Outbox: outbox.Insert}, nil)
	tb, err := ledger.Verify(ctx)
	if err != nil || len(tb.Problems) > 0 {
		t.Fatalf("ledger: %+v, %v", tb, err)
	}
	if bal, _ := ledger.Balance(ctx, nil, "provider:test:USD"); bal.Balance != providerSucceeded || oursSucceeded != providerSucceeded {
		t.Errorf("provider account %d, succeeded intents %d, provider's succeeded payments %d", bal.Balance, oursSucceeded, providerSucceeded)
	}
	if int(tb.Transactions) != states["succeeded"] {
		t.Errorf("%d ledger transactions for %d succeeded payments", tb.Transactions, states["succeeded"])
	}
	if n := count(db.R, `SELECT COUNT(*) FROM (SELECT subject_id FROM events WHERE kind = 'payment.succeeded' GROUP BY subject_id HAVING COUNT(*) > 1)`); n != 0 {
		t.Errorf("%d payments announced as succeeded twice", n)
	}
	if n := count(db.R, `SELECT COUNT(*) FROM payment_intents p WHERE p.state = 'succeeded' AND NOT EXISTS
		(SELECT 1 FROM ledger_transactions t WHERE t.ref = 'payment:' || p.id)`); n != 0 {
		t.Errorf("%d succeeded payments missing from the ledger", n)
	}
	// Reconciliation finds nothing.
	resp, err := http.Post("http://"+p.adm+"/payments/reconcile", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec payment.Reconciliation
	json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if resp.StatusCode != 200 || rec.Checked != orders || len(rec.Drift) != 0 {
		t.Errorf("reconciliation: %d, checked %d, drift %+v", resp.StatusCode, rec.Checked, rec.Drift)
	}
	// Every step of the path was killed at least once.
	logb, _ := os.ReadFile(filepath.Join(dir, "process.log"))
	fired := map[string]int{}
	for _, m := range regexp.MustCompile(`payment failpoint (\w+)#`).FindAllStringSubmatch(string(logb), -1) {
		fired[m[1]]++
	}
	for _, s := range chaosSteps {
		if fired[s] == 0 {
			t.Errorf("failpoint %s never fired (fired: %v)", s, fired)
		}
	}
	kills := 0
	for _, n := range fired {
		kills += n
	}
	t.Logf("%d orders, %d HTTP attempts (%d without an answer), %d restarts in %v: %d kills at failpoints %v, %d at random moments; "+
		"final states %v; %d key-reuse conflicts refused; reconciliation checked %d, healed %d; setup %v, recovery %v",
		orders, attempts.Load(), lost.Load(), p.starts-1, chaosTime.Round(time.Millisecond), kills, fired, p.externallyKills,
		states, conflictsOK.Load(), rec.Checked, rec.Healed, setupTime.Round(time.Millisecond), recoveryTime.Round(time.Millisecond))
	if mismatches.Load() > 0 {
		t.Errorf("%d retries answered differently from the first answer", mismatches.Load())
	}
}

// TestPaymentsThroughTheGateway drives the payment API in-process through
// the gateway with the Go SDK: a tip that settles asynchronously (the test
// provider's webhooks delivered in-process), a membership, a payout, the
// wallet page and the operator view.
func TestPaymentsThroughTheGateway(t *testing.T) {
	p := startPlatform(t, func(c *config.Config) {
		c.Payment.TestProvider.SettleDelay = 100 * time.Millisecond
		c.Payment.PollInterval = 200 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, carol := p.user(t, "alice"), p.user(t, "carol")
	me, err := carol.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := client.IdempotencyKey()
	tip, err := alice.Tip(ctx, key, client.TipRequest{CreatorUsername: "carol", Amount: 2500, Currency: "EUR", PaymentMethod: "pm_card_visa", Message: "thanks!"})
	if err != nil || tip.State != "processing" {
		t.Fatalf("tip: %+v, %v", tip, err)
	}
	again, err := alice.Tip(ctx, key, client.TipRequest{CreatorUsername: "carol", Amount: 2500, Currency: "EUR", PaymentMethod: "pm_card_visa", Message: "thanks!"})
	if err != nil || again.ID != tip.ID {
		t.Fatalf("retry: %+v, %v", again, err)
	}
	if _, err := alice.Tip(ctx, key, client.TipRequest{CreatorUsername: "carol", Amount: 9999, Currency: "EUR", PaymentMethod: "pm_card_visa"}); !client.IsConflict(err) {
		t.Fatalf("key reuse: %v", err)
	}
	done, err := alice.WaitPayment(ctx, tip.ID, 50*time.Millisecond)
	if err != nil || done.State != "succeeded" {
		t.Fatalf("settled: %+v, %v", done, err)
	}
	bal, err := carol.Balance(ctx, me.ID)
	if err != nil || len(bal.Balances) != 1 || bal.Balances[0].Available != 2375 {
		t.Fatalf("balance: %+v, %v", bal, err)
	}
	if _, err := alice.Balance(ctx, me.ID); err == nil {
		t.Fatal("alice read carol's balance")
	}
	sub, err := alice.Subscribe(ctx, "", me.ID, "pm_card_instant")
	if err != nil || sub.Membership.State != "active" {
		t.Fatalf("subscribe: %+v, %v", sub, err)
	}
	po, err := carol.RequestPayout(ctx, "", 2000, "EUR")
	if err != nil || po.State != "in_transit" {
		t.Fatalf("payout: %+v, %v", po, err)
	}
	// The wallet page and the operator view.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.urls.Gateway+"/wallet", nil)
	req.Header.Set("Authorization", "Bearer "+alice.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	page.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(page.String(), "pm_card_visa") || !strings.Contains(page.String(), "/static/payment.js") {
		t.Fatalf("wallet page: %d", resp.StatusCode)
	}
	resp, body := get(t, p.urls.Admin+"/payments")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Trial balance holds") {
		t.Fatalf("admin page: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Post(p.urls.Admin+"/payments/reconcile", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec payment.Reconciliation
	json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if rec.Checked < 2 || len(rec.Drift) != 0 {
		t.Fatalf("reconciliation %+v", rec)
	}
}

// TestBrowserWallet drives the wallet page in headless Chromium: a tip
// with the card that asks for 3-D Secure, approved in the page's
// authentication box, settling to succeeded; the amount typed as a
// decimal reaches the API in minor units.
func TestBrowserWallet(t *testing.T) {
	p := startPlatform(t, func(c *config.Config) {
		c.Payment.TestProvider.SettleDelay = 100 * time.Millisecond
	})
	alice := p.user(t, "alice")
	p.user(t, "carol")
	bctx := newBrowser(t)
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(p.urls.Gateway+"/login?next=/wallet"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "alice"),
		chromedp.SendKeys(`input[name=password]`, "password-alice"),
		chromedp.Submit(`input[name=password]`),
	)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	settle(ctx, t, "/wallet",
		chromedp.WaitVisible(`#tip-form`),
		chromedp.SendKeys(`#tip-creator`, "carol"),
		chromedp.SendKeys(`#tip-amount`, "12.50"),
		chromedp.SendKeys(`#tip-message`, "from the browser"),
		chromedp.SetValue(`#tip-form .pay-method`, "pm_card_authenticationRequired"),
	)
	err = chromedp.Do(ctx,
		chromedp.Click(`#tip-submit`),
		chromedp.WaitVisible(`#auth-approve`),
		chromedp.Click(`#auth-approve`),
	)
	if err != nil {
		status, _ := chromedp.Run(ctx, chromedp.Text(`#pay-status`))
		t.Fatalf("tip with authentication: %v (status %q)", err, status)
	}
	var pays []client.Payment
	for {
		pays, err = alice.Payments(ctx, false, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(pays) == 1 && pays[0].State == "succeeded" {
			break
		}
		if ctx.Err() != nil {
			status, _ := chromedp.Run(bctx, chromedp.Text(`#pay-status`))
			t.Fatalf("payments %+v (page status %q)", pays, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pays[0].Amount != 1250 || pays[0].Currency != "USD" || pays[0].Message != "from the browser" {
		t.Fatalf("payment %+v", pays[0])
	}
	// The page lists it once settled.
	for {
		rows, _ := chromedp.Run(ctx, chromedp.Text(`#payments`))
		if strings.Contains(rows, "12.50 USD") && strings.Contains(rows, "succeeded") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("payments table: %q", rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
