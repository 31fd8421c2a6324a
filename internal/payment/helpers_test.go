package payment_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// clock is a settable clock shared by the service and the test provider.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// users is an in-memory user directory (a test helper).
type users struct{ names map[int64]string }

func (u users) Exists(_ context.Context, id int64) (bool, error) {
	_, ok := u.names[id]
	return ok, nil
}
func (u users) Lookup(_ context.Context, name string) (int64, error) {
	for id, n := range u.names {
		if n == name {
			return id, nil
		}
	}
	return 0, nil
}

// Users of every test environment.
const (
	alice   int64 = 1001 // viewer
	bob     int64 = 1002 // viewer
	carol   int64 = 2001 // creator
	dave    int64 = 2002 // creator
	nobody  int64 = 9999 // does not exist
	mallory int64 = 1003 // viewer
)

// env is a payment service on a real store with the test provider.
type env struct {
	t     testing.TB
	db    *payment.DB
	svc   *payment.Service
	tp    *testprovider.Provider
	clock *clock
	cfg   payment.Config
	// failAt, when set, makes the failpoint named panic with crash{}.
	failAt atomic.Value // string
}

type crash struct{ step string }

type backend struct {
	name string
	open func(t *testing.T) *payment.DB
}

// sqliteDB opens Blueprint's SQLite store (with migration 0005) in a
// temp dir.
func sqliteDB(t *testing.T) *payment.DB { return openSQLite(t) }

func openSQLite(t testing.TB) *payment.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &payment.DB{W: db.W, R: db.R, Dialect: payment.SQLite, Outbox: outbox.Insert}
}

// pgServer starts one throwaway PostgreSQL per test and hands out a fresh
// database per call.
type pgServer struct {
	dsn string
	n   atomic.Int64
}

func startPG(t *testing.T) *pgServer {
	t.Helper()
	return &pgServer{dsn: testenv.StartPostgres(t, false)}
}

func (s *pgServer) open(t *testing.T) *payment.DB {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("pay_%d", s.n.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", replaceDB(s.dsn, name))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(16)
	t.Cleanup(func() { db.Close() })
	if err := payment.MigratePostgres(ctx, db); err != nil {
		t.Fatal(err)
	}
	return &payment.DB{W: db, R: db, Dialect: payment.Postgres}
}

func replaceDB(dsn, name string) string {
	// postgres://postgres@127.0.0.1:port/postgres?sslmode=disable
	i := len("postgres://")
	for ; i < len(dsn) && dsn[i] != '/'; i++ {
	}
	j := i + 1
	for ; j < len(dsn) && dsn[j] != '?'; j++ {
	}
	return dsn[:i+1] + name + dsn[j:]
}

func newEnv(t testing.TB, db *payment.DB, mutate func(*payment.Config, *testprovider.Config)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, db: db, clock: newClock()}
	e.failAt.Store("")
	failpoint := func(step string) {
		if e.failAt.Load().(string) == step {
			e.failAt.Store("")
			panic(crash{step})
		}
	}
	cfg := payment.DefaultConfig()
	cfg.Users = users{names: map[int64]string{alice: "alice", bob: "bob", carol: "carol", dave: "dave", mallory: "mallory"}}
	cfg.Now = e.clock.Now
	cfg.Failpoint = failpoint
	cfg.WebhookAllowPrivate = true
	tpc := testprovider.Config{
		Path: filepath.Join(t.TempDir(), "tp.db"), Secret: []byte("test-provider-webhook-secret"), SettleDelay: 2 * time.Second,
		Now: e.clock.Now, Failpoint: failpoint,
	}
	tpc.Deliver = func(ctx context.Context, body []byte, h http.Header) (int, error) {
		if _, err := e.svc.ReceiveWebhook(ctx, testprovider.Name, body, h); err != nil {
			return errs.HTTPStatus(err), err
		}
		return http.StatusOK, nil
	}
	if mutate != nil {
		mutate(&cfg, &tpc)
	}
	tp, err := testprovider.Open(ctx, tpc, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	svc, err := payment.New(cfg, db, tp, idgentest.New(t), quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, e.tp, e.cfg = svc, tp, cfg
	return e
}

// crashAt runs f with the failpoint step armed and reports whether it
// crashed there.
func (e *env) crashAt(step string, f func()) (crashed bool) {
	e.failAt.Store(step)
	defer func() {
		e.failAt.Store("")
		if p := recover(); p != nil {
			if _, ok := p.(crash); !ok {
				panic(p)
			}
			crashed = true
		}
	}()
	f()
	return false
}

// settle advances the clock past the settle delay and lets the provider
// settle and deliver its webhooks.
func (e *env) settle() {
	e.t.Helper()
	e.clock.Advance(3 * time.Second)
	ctx := context.Background()
	if _, err := e.tp.SettleDue(ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.tp.DeliverDue(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) tip(payer int64, key string, req payment.TipRequest) (payment.Reply, error) {
	return e.svc.Tip(context.Background(), payer, key, req, nil)
}

func (e *env) mustBalance(code string) int64 {
	e.t.Helper()
	b, err := e.svc.Ledger().Balance(context.Background(), nil, code)
	if err != nil {
		e.t.Fatal(err)
	}
	return b.Balance
}

func (e *env) verifyLedger() payment.TrialBalance {
	e.t.Helper()
	tb, err := e.svc.Ledger().Verify(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if len(tb.Problems) > 0 {
		e.t.Fatalf("ledger problems: %v", tb.Problems)
	}
	return tb
}

// providerCharges counts the provider's payments per Blueprint intent.
func (e *env) providerCharges() map[int64]int {
	e.t.Helper()
	rows, err := e.tp.DB().Query(`SELECT intent_id, COUNT(*) FROM tp_payments GROUP BY intent_id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		rows.Scan(&id, &n)
		out[id] = n
	}
	return out
}

func (e *env) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.R.QueryRow(rebind(e.db, q), args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func rebind(db *payment.DB, q string) string {
	if db.Dialect != payment.Postgres {
		return q
	}
	out := []byte{}
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			out = append(out, fmt.Sprintf("$%d", n)...)
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}
