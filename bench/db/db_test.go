// Package db benchmarks the PostgreSQL replica router (internal/sqlstore/
// pgrepl) against direct pgx on the same queries, and read throughput with
// 0, 1 and 2 streaming replicas, on a throwaway cluster started by the
// benchmark (testenv.StartPGCluster). Not part of make test:
//
//	flock /tmp/bench.lock go test ./bench/db -run '^$' -bench . -benchtime 2s
//	go test ./bench/db -run TestPgbench -v     # pgbench -S on the same primary, for reference
package db

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/blueprint-media/blueprint/internal/sqlstore/pgrepl"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

const (
	rows     = 10_000
	poolSize = 16 // both sides: open and idle (pgrepl.Config.MaxConns)
	rounds   = 5  // interleaved rounds per comparison; medians are reported
)

// setup starts a cluster (a primary and n streaming replicas) for one
// benchmark and fills a table to read and one to write. The comparisons
// with direct pgx run on a primary alone: replicas replaying the writes
// would compete for the same cores, long after the run that wrote.
func setup(b testing.TB, n int) *testenv.PGCluster {
	b.Helper()
	c := testenv.StartPGCluster(b, n)
	db := openDirect(b, c.Primary.URL)
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT NOT NULL);
		INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, ` + strconv.Itoa(rows) + `) g;
		CREATE TABLE writes (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	// Wait until the replicas have the rows.
	for _, r := range c.Replicas {
		rdb := openDirect(b, r.URL)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			if rdb.QueryRow(`SELECT COUNT(*) FROM items`).Scan(&n); n == rows {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("replica never caught up")
			}
			time.Sleep(50 * time.Millisecond)
		}
		rdb.Close()
	}
	return c
}

// openDirect opens a plain pgx pool sized like the router's.
func openDirect(b testing.TB, url string) *sql.DB {
	b.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	return db
}

// openRouter opens a router over nodes with pools of poolSize.
func openRouter(b testing.TB, nodes ...string) *pgrepl.Router {
	b.Helper()
	r, err := pgrepl.Open(context.Background(), pgrepl.Config{Nodes: nodes, MaxConns: poolSize})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// read is one point read on the pool pick returns.
func read(pick func() *sql.DB, i int) error {
	var v string
	return pick().QueryRow(`SELECT v FROM items WHERE id = $1`, i%rows+1).Scan(&v)
}

// write is one single-row insert transaction.
type write func(i int) error

func directWrite(db *sql.DB) write {
	return func(i int) error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO writes (v) VALUES ($1)`, strconv.Itoa(i)); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
}

func routerWrite(r *pgrepl.Router) write {
	return func(i int) error {
		lsn, err := r.Write(context.Background(), func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO writes (v) VALUES ($1)`, strconv.Itoa(i))
			return err
		})
		if err == nil && lsn == 0 {
			err = fmt.Errorf("write %d: no LSN", i)
		}
		return err
	}
}

// warm opens connections and prepares statements on every side from as
// many goroutines as RunParallel uses, so that no measured round pays for
// connection setup.
func warm(b *testing.B, ops ...func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range 500 {
				for _, op := range ops {
					if err := op(i); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// stats is one run's latency percentiles.
type stats struct{ p50, p99 time.Duration }

func percentiles(lat []time.Duration) stats {
	if len(lat) == 0 {
		return stats{}
	}
	slices.Sort(lat)
	return stats{lat[len(lat)/2], lat[len(lat)*99/100]}
}

func µs(d time.Duration) float64 { return float64(d) / 1e3 }

// measure runs the ops in turn on every goroutine of RunParallel (op i%len
// on the i-th iteration) and returns each op's latency percentiles. With
// two ops, both sides see the same server, machine load and connection
// state at the same moments.
func measure(b *testing.B, ops ...func(i int) error) []stats {
	b.ReportAllocs()
	lat := make([][]time.Duration, len(ops))
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		local := make([][]time.Duration, len(ops))
		i := 0
		for pb.Next() {
			k := i % len(ops)
			start := time.Now()
			if err := ops[k](i); err != nil {
				b.Error(err)
				return
			}
			local[k] = append(local[k], time.Since(start))
			i++
		}
		mu.Lock()
		for k := range ops {
			lat[k] = append(lat[k], local[k]...)
		}
		mu.Unlock()
	})
	out := make([]stats, len(ops))
	for k := range ops {
		out[k] = percentiles(lat[k])
	}
	return out
}

// measureSeq is measure on one goroutine: the ops in turn, never two at
// once, so that neither side's server work delays the other's.
func measureSeq(b *testing.B, ops ...func(i int) error) []stats {
	b.ReportAllocs()
	lat := make([][]time.Duration, len(ops))
	for i := range b.N {
		k := i % len(ops)
		start := time.Now()
		if err := ops[k](i); err != nil {
			b.Fatal(err)
		}
		lat[k] = append(lat[k], time.Since(start))
	}
	out := make([]stats, len(ops))
	for k := range ops {
		out[k] = percentiles(lat[k])
	}
	return out
}

func report(b *testing.B, s stats) {
	b.ReportMetric(µs(s.p50), "p50-µs")
	b.ReportMetric(µs(s.p99), "p99-µs")
}

// side is one way of doing the operation under comparison.
type side struct {
	name string
	op   func(i int) error
}

// compare measures each side against direct, in rounds:
//
//   - alone: direct and every side, each on its own (separate runs, one
//     after the other, 2 goroutines; who goes first rotates by round);
//   - paired: every side and direct alternating op by op on the same 2
//     goroutines, at the same moments under the same machine load (but a
//     side's extra server work also delays the direct ops beside it);
//   - seq: the same alternation on one goroutine, one op at a time.
//
// direct2 is a second direct pool to the same server: its pairing with
// direct (A/A) shows how far two identical sides differ on this machine,
// the noise floor. The medians over the rounds are printed at the end.
func compare(b *testing.B, what string, direct, direct2 func(i int) error, sides ...side) {
	all := append([]side{{"direct", direct}}, sides...)
	pairs := append([]side{{"direct2", direct2}}, sides...)
	// Indexed by round; a round filtered out by -bench stays zero and is
	// left out of the medians.
	alone := map[string][]stats{}
	paired := map[string][][2]stats{}
	seq := map[string][][2]stats{}
	for _, sd := range all {
		alone[sd.name] = make([]stats, rounds)
	}
	for _, sd := range pairs {
		paired[sd.name], seq[sd.name] = make([][2]stats, rounds), make([][2]stats, rounds)
	}
	for round := 1; round <= rounds; round++ {
		// Each side goes first in turn: a run can leave work behind for
		// the server (autovacuum, WAL) that slows the next one.
		for j := range all {
			sd := all[(j+round-1)%len(all)]
			b.Run(fmt.Sprintf("%s/round=%d", sd.name, round), func(b *testing.B) {
				s := measure(b, sd.op)[0]
				report(b, s)
				alone[sd.name][round-1] = s
			})
		}
		for _, mode := range []struct {
			name    string
			measure func(*testing.B, ...func(int) error) []stats
			out     map[string][][2]stats
		}{{"paired", measure, paired}, {"seq", measureSeq, seq}} {
			for _, sd := range pairs {
				b.Run(fmt.Sprintf("%s-%s-direct/round=%d", mode.name, sd.name, round), func(b *testing.B) {
					s := mode.measure(b, sd.op, direct)
					b.ReportMetric(µs(s[0].p50), "side-p50-µs")
					b.ReportMetric(µs(s[1].p50), "direct-p50-µs")
					b.ReportMetric(ratio(s[0].p50, s[1].p50), "p50-ratio")
					b.ReportMetric(ratio(s[0].p99, s[1].p99), "p99-ratio")
					mode.out[sd.name][round-1] = [2]stats{s[0], s[1]}
				})
			}
		}
	}
	fmt.Printf("# %s, %d rounds, medians (min–max over rounds):\n", what, rounds)
	for _, sd := range all {
		p50 := spread(alone[sd.name], func(s stats) float64 { return µs(s.p50) })
		p99 := spread(alone[sd.name], func(s stats) float64 { return µs(s.p99) })
		fmt.Printf("#   %-17s alone: p50 %s µs, p99 %s µs\n", sd.name, p50, p99)
	}
	for _, sd := range sides {
		r50 := ratios(alone[sd.name], alone["direct"], func(s stats) time.Duration { return s.p50 })
		r99 := ratios(alone[sd.name], alone["direct"], func(s stats) time.Duration { return s.p99 })
		fmt.Printf("#   %-17s alone / direct alone, same round: p50 ×%s, p99 ×%s\n", sd.name, r50, r99)
	}
	for _, mode := range []struct {
		name string
		out  map[string][][2]stats
	}{{"paired", paired}, {"seq", seq}} {
		for _, sd := range pairs {
			var a, d []stats
			for _, p := range mode.out[sd.name] {
				a, d = append(a, p[0]), append(d, p[1])
			}
			r50 := ratios(a, d, func(s stats) time.Duration { return s.p50 })
			r99 := ratios(a, d, func(s stats) time.Duration { return s.p99 })
			d50 := spread(d, func(s stats) float64 { return µs(s.p50) })
			fmt.Printf("#   %-17s %s with direct: p50 ×%s, p99 ×%s (direct p50 %s µs)\n", sd.name, mode.name, r50, r99, d50)
		}
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// spread formats the median and the range of f over the rounds.
func spread(s []stats, f func(stats) float64) string {
	var v []float64
	for _, st := range s {
		if st != (stats{}) {
			v = append(v, f(st))
		}
	}
	return medRange(v, "%.1f")
}

// ratios formats the median and range of round-by-round ratios a/b.
func ratios(a, b []stats, f func(stats) time.Duration) string {
	var v []float64
	for i := range min(len(a), len(b)) {
		if f(a[i]) != 0 && f(b[i]) != 0 {
			v = append(v, ratio(f(a[i]), f(b[i])))
		}
	}
	return medRange(v, "%.3f")
}

func medRange(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	f := func(x float64) string { return fmt.Sprintf(format, x) }
	return f(v[len(v)/2]) + " (" + f(v[0]) + "–" + f(v[len(v)-1]) + ")"
}

// BenchmarkRouterOverhead: the same point read on the primary, direct and
// through the router over the primary alone (Reader returns the primary's
// pool, so both sides read the same server): "router" with its own pools
// (as deployed), "router-sharedpool" with Config.Open handing it the
// direct pool, so that the only difference left is the router's own work
// per read (Reader).
func BenchmarkRouterOverhead(b *testing.B) {
	c := setup(b, 0)
	ctx := context.Background()
	direct := openDirect(b, c.Primary.URL)
	defer direct.Close()
	direct2 := openDirect(b, c.Primary.URL)
	defer direct2.Close()
	r := openRouter(b, c.Primary.URL)
	defer r.Close()
	shared, err := pgrepl.Open(ctx, pgrepl.Config{Nodes: []string{c.Primary.URL}, MaxConns: poolSize,
		Open: func(string) (*sql.DB, error) { return direct, nil }})
	if err != nil {
		b.Fatal(err)
	}
	// Not closed: it would close direct's pool; its probe stops with the process.
	on := func(pick func() *sql.DB) func(int) error { return func(i int) error { return read(pick, i) } }
	viaDirect, viaDirect2 := on(func() *sql.DB { return direct }), on(func() *sql.DB { return direct2 })
	viaRouter := on(func() *sql.DB { return r.Reader(ctx, 0) })
	viaShared := on(func() *sql.DB { return shared.Reader(ctx, 0) })
	warm(b, viaRouter, viaDirect, viaDirect2)
	compare(b, "point read", viaDirect, viaDirect2, side{"router", viaRouter}, side{"router-sharedpool", viaShared})
}

// BenchmarkWrite: a one-row insert transaction through Router.Write
// (which also returns the commit's LSN, fetched with the COMMIT: "router")
// against the same transaction on a plain pgx pool; and Router.Write on a
// pool without pgrepl.Connector ("router-lsnquery"), which asks for the
// LSN with one more query after the commit.
func BenchmarkWrite(b *testing.B) {
	c := setup(b, 0)
	direct := openDirect(b, c.Primary.URL)
	defer direct.Close()
	direct2 := openDirect(b, c.Primary.URL)
	defer direct2.Close()
	r := openRouter(b, c.Primary.URL)
	defer r.Close()
	plain, err := pgrepl.Open(context.Background(), pgrepl.Config{
		Nodes: []string{c.Primary.URL}, MaxConns: poolSize,
		Open: func(u string) (*sql.DB, error) { return sql.Open("pgx", u) },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	viaRouter, viaQuery := routerWrite(r), routerWrite(plain)
	viaDirect, viaDirect2 := directWrite(direct), directWrite(direct2)
	warm(b, viaRouter, viaQuery, viaDirect, viaDirect2)
	compare(b, "write", viaDirect, viaDirect2, side{"router", viaRouter}, side{"router-lsnquery", viaQuery})
}

// BenchmarkReadReplicas: read throughput through the router with 0, 1 and
// 2 replicas beside the primary (reads without an LSN go to replicas).
func BenchmarkReadReplicas(b *testing.B) {
	c := setup(b, 2)
	ctx := context.Background()
	for n := 0; n <= 2; n++ {
		nodes := []string{c.Primary.URL}
		for _, rep := range c.Replicas[:n] {
			nodes = append(nodes, rep.URL)
		}
		r := openRouter(b, nodes...)
		viaRouter := func(i int) error { return read(func() *sql.DB { return r.Reader(ctx, 0) }, i) }
		warm(b, viaRouter)
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			report(b, measure(b, viaRouter)[0])
		})
		r.Close()
	}
}

// TestPgbench prints pgbench's select-only TPS on the same kind of server,
// for reference.
func TestPgbench(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Fatal("pgbench is not installed (postgresql-client)")
	}
	c := setup(t, 0)
	host, port := "127.0.0.1", strconv.Itoa(c.Primary.Port)
	if out, err := exec.Command("pgbench", "-h", host, "-p", port, "-U", "postgres", "-i", "-s", "2", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	out, err := exec.Command("pgbench", "-h", host, "-p", port, "-U", "postgres", "-S", "-c", "8", "-j", "2", "-T", "5", "postgres").CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	found := false
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "tps") || strings.Contains(l, "latency average") {
			t.Log(l)
			found = true
		}
	}
	if !found {
		t.Errorf("no tps line in pgbench's output:\n%s", out)
	}
}
