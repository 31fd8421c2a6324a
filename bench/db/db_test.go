// Package db benchmarks the PostgreSQL replica router (internal/sqlstore/
// pgrepl) against direct pgx on the same queries, and read throughput with
// 0, 1 and 2 streaming replicas, on a throwaway cluster started by the
// benchmark (testenv.StartPGCluster). Not part of make test:
//
//	go test ./bench/db -run '^$' -bench . -benchtime 3s
//	go test ./bench/db -run TestPgbench -v     # pgbench -S on the same primary, for reference
package db

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
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

const rows = 10_000

// setup starts a cluster (primary + 2 streaming replicas) for one
// benchmark and fills a table.
func setup(b testing.TB) *testenv.PGCluster {
	b.Helper()
	c := testenv.StartPGCluster(b, 2)
	db, err := sql.Open("pgx", c.Primary.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT NOT NULL);
		INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, ` + strconv.Itoa(rows) + `) g`); err != nil {
		b.Fatal(err)
	}
	// Wait until both replicas have the rows.
	for _, r := range c.Replicas {
		rdb, _ := sql.Open("pgx", r.URL)
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

func pointRead(b *testing.B, pick func() *sql.DB) {
	b.ReportAllocs()
	var lat []time.Duration
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		i := 0
		for pb.Next() {
			i++
			start := time.Now()
			var v string
			if err := pick().QueryRow(`SELECT v FROM items WHERE id = $1`, i%rows+1).Scan(&v); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	if len(lat) > 0 {
		sortDur(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func sortDur(d []time.Duration) { slices.Sort(d) }

// BenchmarkRouterOverhead: the same point read on the primary, direct and
// through the router (Reader with an LSN no replica has: the primary).
func BenchmarkRouterOverhead(b *testing.B) {
	c := setup(b)
	direct, err := sql.Open("pgx", c.Primary.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	direct.SetMaxOpenConns(16)
	r, err := pgrepl.Open(context.Background(), pgrepl.Config{Nodes: []string{c.Primary.URL}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	// Interleaved rounds, so that neither side always runs on a colder or
	// warmer server.
	for round := 1; round <= 3; round++ {
		b.Run(fmt.Sprintf("router/round=%d", round), func(b *testing.B) {
			pointRead(b, func() *sql.DB { return r.Reader(context.Background(), 0) })
		})
		b.Run(fmt.Sprintf("direct/round=%d", round), func(b *testing.B) { pointRead(b, func() *sql.DB { return direct }) })
	}
}

// BenchmarkReadReplicas: read throughput through the router with 0, 1 and
// 2 replicas beside the primary (reads without an LSN go to replicas).
func BenchmarkReadReplicas(b *testing.B) {
	c := setup(b)
	for n := 0; n <= 2; n++ {
		nodes := []string{c.Primary.URL}
		for _, rep := range c.Replicas[:n] {
			nodes = append(nodes, rep.URL)
		}
		r, err := pgrepl.Open(context.Background(), pgrepl.Config{Nodes: nodes})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			pointRead(b, func() *sql.DB { return r.Reader(context.Background(), 0) })
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
	c := setup(t)
	host, port := "127.0.0.1", strconv.Itoa(c.Primary.Port)
	if out, err := exec.Command("pgbench", "-h", host, "-p", port, "-U", "postgres", "-i", "-s", "2", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	out, err := exec.Command("pgbench", "-h", host, "-p", port, "-U", "postgres", "-S", "-c", "8", "-j", "2", "-T", "5", "postgres").CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "tps") || strings.Contains(l, "latency average") {
			t.Log(l)
		}
	}
}
