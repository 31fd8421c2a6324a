// Package payments benchmarks the payment path: tips per second through
// the HTTP API, the idempotency key, the provider call and the durable
// ledger write, on the embedded SQLite store and on a throwaway PostgreSQL
// (fsync on), next to the floor — the least a durable double-entry payment
// costs on the same engine: one transaction inserting a payment row and
// its two balanced ledger entries.
//
//	go test -run '^$' -bench . -benchtime 3s -count 3 ./bench/payments
package payments

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// engine opens a fresh payment store.
type engine struct {
	name string
	open func(b *testing.B) *payment.DB
}

func sqlite(sync string) func(b *testing.B) *payment.DB {
	return func(b *testing.B) *payment.DB {
		db, err := sqlstore.Open(context.Background(), filepath.Join(b.TempDir(), "bp.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		// One writer connection: the pragma holds for every write.
		if _, err := db.W.Exec("PRAGMA synchronous=" + sync); err != nil {
			b.Fatal(err)
		}
		return &payment.DB{W: db.W, R: db.R, Dialect: payment.SQLite, Outbox: outbox.Insert}
	}
}

var (
	pgDSN string // set by BenchmarkPayments, which owns the server
	pgN   atomic.Int64
)

func postgres(b *testing.B) *payment.DB {
	ctx := context.Background()
	admin, err := sql.Open("pgx", pgDSN)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("bench_%d", pgN.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("pgx", dsnWithDB(pgDSN, name))
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	b.Cleanup(func() { db.Close() })
	if err := payment.MigratePostgres(ctx, db); err != nil {
		b.Fatal(err)
	}
	return &payment.DB{W: db, R: db, Dialect: payment.Postgres}
}

func dsnWithDB(dsn, name string) string {
	i := len("postgres://")
	for ; dsn[i] != '/'; i++ {
	}
	j := i + 1
	for ; j < len(dsn) && dsn[j] != '?'; j++ {
	}
	return dsn[:i+1] + name + dsn[j:]
}

var engines = []engine{
	{"sqlite-normal", sqlite("NORMAL")}, // Blueprint's setting: WAL, durable across process crashes
	{"sqlite-full", sqlite("FULL")},     // fsync on every commit: durable across power loss
	{"postgres", postgres},              // fsync on, synchronous_commit on
}

// latencies collects per-payment times.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	if n := len(l.d); n > 0 {
		b.ReportMetric(float64(l.d[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(l.d[n*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "payments/s")
}

// BenchmarkPayments: blueprint = POST /api/v1/tips over loopback HTTP with
// a new Idempotency-Key each, an instant test card (the payment succeeds
// synchronously, so every op books the ledger, writes the outbox event and
// stores the response); floor = the minimal durable double-entry write.
// 8 concurrent clients.
func BenchmarkPayments(b *testing.B) {
	pgDSN = testenv.StartPostgres(b, true)
	for _, e := range engines {
		b.Run(e.name+"/blueprint", func(b *testing.B) { benchBlueprint(b, e.open(b)) })
		b.Run(e.name+"/floor", func(b *testing.B) { benchFloor(b, e.open(b)) })
	}
}

func benchBlueprint(b *testing.B, db *payment.DB) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The provider stands in for a remote PSP: its own state is not
	// what is measured, so its database does not fsync.
	tp, err := testprovider.Open(ctx, testprovider.Config{Path: filepath.Join(b.TempDir(), "tp.db"), Secret: []byte("bench-secret-0123"),
		Synchronous: "OFF"}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	cfg := payment.DefaultConfig()
	cfg.DailyLimit = 1 << 50
	svc, err := payment.New(cfg, db, tp, idgentest.New(b), quiet, nil)
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Module(nil, nil).Routes(mux, "bench")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, _ := strconv.ParseInt(r.Header.Get("X-Bench-User"), 10, 64)
		mux.ServeHTTP(w, r.WithContext(account.NewContext(r.Context(), account.Identity{UserID: uid})))
	}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var seq atomic.Int64
	var lat latencies
	b.SetParallelism(4) // 8 clients on 2 cores
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			payer := 1000 + n%64
			body := fmt.Sprintf(`{"creator_id":"%d","amount":%d,"currency":"USD","payment_method":"pm_card_instant"}`, 5000+n%16, 100+n%900)
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/tips", bytes.NewReader([]byte(body)))
			req.Header.Set("X-Bench-User", strconv.FormatInt(payer, 10))
			req.Header.Set(payment.IdempotencyHeader, "bench-"+strconv.FormatInt(n, 10))
			t0 := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat.add(time.Since(t0))
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
	tb, err := svc.Ledger().Verify(ctx)
	if err != nil || len(tb.Problems) > 0 || tb.Transactions != int64(b.N) {
		b.Fatalf("ledger after the run: %+v, %v (want %d transactions)", tb, err, b.N)
	}
}

// benchFloor writes, per payment, in one transaction: a payment row and a
// ledger transaction with its two entries (creator share and fee), on the
// payment schema of the same engine.
func benchFloor(b *testing.B, db *payment.DB) {
	ctx := context.Background()
	q := func(s string) string {
		if db.Dialect != payment.Postgres {
			return s
		}
		out, n := []byte{}, 0
		for i := 0; i < len(s); i++ {
			if s[i] == '?' {
				n++
				out = append(out, fmt.Sprintf("$%d", n)...)
				continue
			}
			out = append(out, s[i])
		}
		return string(out)
	}
	// Three accounts.
	for i, code := range []string{"provider:test:USD", "creator:1:USD", "fees:USD"} {
		if _, err := db.W.ExecContext(ctx, q(`INSERT INTO ledger_accounts(code, type, currency, created_at) VALUES (?, ?, 'USD', 0)`),
			code, []string{"asset", "liability", "revenue"}[i]); err != nil {
			b.Fatal(err)
		}
	}
	var ids [3]int64
	for i, code := range []string{"provider:test:USD", "creator:1:USD", "fees:USD"} {
		if err := db.R.QueryRowContext(ctx, q(`SELECT id FROM ledger_accounts WHERE code = ?`), code).Scan(&ids[i]); err != nil {
			b.Fatal(err)
		}
	}
	insIntent := q(`INSERT INTO payment_intents(id, kind, payer_id, creator_id, amount, fee, currency, state, provider, day, created_at, updated_at)
		VALUES (?, 'tip', 2, 1, ?, ?, 'USD', 'succeeded', 'test', 0, 0, 0)`)
	insTx := q(`INSERT INTO ledger_transactions(ref, kind, created_at) VALUES (?, 'payment', 0) RETURNING id`)
	insEntry := q(`INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, ?, 'USD', ?)`)
	var seq atomic.Int64
	var lat latencies
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			amount := 100 + n%900
			fee := amount / 20
			t0 := time.Now()
			for {
				err := func() error {
					tx, err := db.W.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					if _, err := tx.ExecContext(ctx, insIntent, n, amount, fee); err != nil {
						return err
					}
					var txID int64
					if err := tx.QueryRowContext(ctx, insTx, "payment:"+strconv.FormatInt(n, 10)).Scan(&txID); err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, insEntry, txID, ids[0], ids[1], amount-fee); err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, insEntry, txID, ids[0], ids[2], fee); err != nil {
						return err
					}
					return tx.Commit()
				}()
				if err == nil {
					break
				}
				b.Error(err)
				return
			}
			lat.add(time.Since(t0))
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
}
