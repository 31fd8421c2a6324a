package pgrepl_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/blueprint-media/blueprint/internal/sqlstore/pgrepl"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

func TestParseLSN(t *testing.T) {
	for s, want := range map[string]pgrepl.LSN{"0/0": 0, "0/16B3748": 0x16B3748, "1/0": 1 << 32, "FFFFFFFF/FFFFFFFF": 1<<64 - 1} {
		got, err := pgrepl.ParseLSN(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParseLSN(%q) = %v (%s), %v; want %v", s, got, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "1", "G/0", "1/", "/1", "100000000/0", "0x1/0", "-1/0"} {
		if _, err := pgrepl.ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}

// TestReadYourWritesWithLaggingReplica: one replica stops replaying WAL
// (injected lag), the other keeps up. Thousands of write → read pairs
// read their own write every time, while replicas still serve most reads;
// then a replica dies and is routed around.
func TestReadYourWritesWithLaggingReplica(t *testing.T) {
	c := testenv.StartPGCluster(t, 2)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	r, err := pgrepl.Open(ctx, pgrepl.Config{Nodes: []string{c.Primary.URL, c.Replicas[0].URL, c.Replicas[1].URL}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Primary().Exec(`CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// Injected lag: replica 1 stops replaying.
	lagging, err := sql.Open("pgx", c.Replicas[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer lagging.Close()
	waitReplicas(t, r)
	if _, err := lagging.Exec(`SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatal(err)
	}

	stale := 0
	const pairs = 2000
	for i := range pairs {
		lsn, err := r.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO items(id, v) VALUES ($1, 'x')`, i)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := r.Reader(ctx, lsn).QueryRow(`SELECT COUNT(*) FROM items WHERE id = $1`, i).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			stale++
		}
	}
	replica := testutil.ToFloat64(pgrepl.Reads(r, "replica"))
	behind := testutil.ToFloat64(pgrepl.Reads(r, "primary_replicas_behind"))
	t.Logf("%d write→read pairs: %d stale; %.0f read on a replica, %.0f on the primary because replicas were behind; max lag %d bytes",
		pairs, stale, replica, behind, r.MaxLag())
	if stale != 0 {
		t.Fatalf("%d stale reads of the caller's own write", stale)
	}
	if replica == 0 {
		t.Error("no read went to a replica: the healthy one should serve")
	}
	if r.MaxLag() <= 0 {
		t.Error("the paused replica shows no lag")
	}
	for _, st := range r.Status() {
		if st.Node == 1 && st.LagBytes <= 0 {
			t.Errorf("status of the paused replica: %+v", st)
		}
	}

	// Reads without an LSN may go to a lagging replica; that is their
	// contract (no own write to see).
	if db := r.Reader(ctx, 0); db == nil {
		t.Fatal("no reader")
	}

	// The healthy replica dies: it is routed around, reads still work.
	lagging.Exec(`SELECT pg_wal_replay_resume()`)
	c.Stop(t, c.Replicas[1])
	deadline := time.Now().Add(10 * time.Second)
	for r.Status()[2].Role != "down" {
		if time.Now().After(deadline) {
			t.Fatal("the stopped replica is not marked down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 100 {
		lsn, err := r.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO items(id, v) VALUES ($1, 'y')`, pairs+i)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := r.Reader(ctx, lsn).QueryRow(`SELECT COUNT(*) FROM items WHERE id = $1`, pairs+i).Scan(&n); err != nil || n != 1 {
			t.Fatalf("read after a replica died: %d, %v", n, err)
		}
	}
}

// TestWriteLSN: the position Write returns lies after the commit and no
// further than the server's insert position right after it, with the
// default pools (fetched with the COMMIT) and with pools of Config.Open
// (one more query); failed commits are errors and leave the pool usable.
func TestWriteLSN(t *testing.T) {
	c := testenv.StartPGCluster(t, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		open func(string) (*sql.DB, error)
	}{
		{"default", nil},
		{"Config.Open", func(u string) (*sql.DB, error) { return sql.Open("pgx", u) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := pgrepl.Open(ctx, pgrepl.Config{Nodes: []string{c.Primary.URL}, Open: tc.open})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := r.Primary().Exec(`DROP TABLE IF EXISTS w;
				CREATE TABLE w (id INT PRIMARY KEY, parent INT REFERENCES w DEFERRABLE INITIALLY DEFERRED)`); err != nil {
				t.Fatal(err)
			}
			insertLSN := func() pgrepl.LSN {
				var s string
				if err := r.Primary().QueryRow(`SELECT pg_current_wal_insert_lsn()::text`).Scan(&s); err != nil {
					t.Fatal(err)
				}
				l, err := pgrepl.ParseLSN(s)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			for i := range 50 {
				before := insertLSN()
				lsn, err := r.Write(ctx, func(tx *sql.Tx) error {
					_, err := tx.Exec(`INSERT INTO w (id) VALUES ($1)`, i)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if after := insertLSN(); lsn <= before || lsn > after {
					t.Fatalf("write %d: LSN %s, want in (%s, %s]", i, lsn, before, after)
				}
			}
			// A statement failed inside fn, fn returned nil: the COMMIT
			// rolls back, and Write says so.
			_, err = r.Write(ctx, func(tx *sql.Tx) error {
				tx.Exec(`INSERT INTO w (id) VALUES (0)`) // duplicate key
				return nil
			})
			if !errors.Is(err, pgx.ErrTxCommitRollback) {
				t.Errorf("commit of a failed transaction: %v, want ErrTxCommitRollback", err)
			}
			// A deferred constraint fails at COMMIT itself.
			_, err = r.Write(ctx, func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO w (id, parent) VALUES (1000, 999)`)
				return err
			})
			var n int
			if r.Primary().QueryRow(`SELECT COUNT(*) FROM w WHERE id = 1000`).Scan(&n); err == nil || n != 0 {
				t.Errorf("deferred constraint violation: err %v, %d rows", err, n)
			}
			// The pool still works.
			if _, err := r.Write(ctx, func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO w (id) VALUES (1001)`)
				return err
			}); err != nil {
				t.Errorf("write after failed commits: %v", err)
			}
		})
	}
}

// TestNoConnectionChurn: concurrent reads while the probe borrows a
// connection from the same pool every few milliseconds. The pool keeps its
// connections: the reads see at most as many server processes as there
// were concurrent users. (With database/sql's default of 2 idle
// connections, a probe that finds both readers' connections busy opens a
// third, and one of the three is closed when they come back: a new server
// process at nearly every probe.)
func TestNoConnectionChurn(t *testing.T) {
	c := testenv.StartPGCluster(t, 0)
	ctx := context.Background()
	r, err := pgrepl.Open(ctx, pgrepl.Config{Nodes: []string{c.Primary.URL}, ProbeInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const readers, reads = 4, 3000
	var mu sync.Mutex
	pids := map[int]bool{}
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for range reads {
				var pid int
				if err := r.Reader(ctx, 0).QueryRow(`SELECT pg_backend_pid()`).Scan(&pid); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				pids[pid] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d reads from %d goroutines, probe every 2ms: %d server processes", readers*reads, readers, len(pids))
	if len(pids) > readers+1 {
		t.Errorf("reads were served by %d server processes, want at most %d (readers + probe): the pool churns connections", len(pids), readers+1)
	}
}

// TestFollowsPromotedReplica: the primary dies, an operator promotes a
// replica (pg_ctl promote, as Patroni would), and writes follow it.
func TestFollowsPromotedReplica(t *testing.T) {
	c := testenv.StartPGCluster(t, 1)
	ctx := context.Background()
	r, err := pgrepl.Open(ctx, pgrepl.Config{Nodes: []string{c.Primary.URL, c.Replicas[0].URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`CREATE TABLE t (id INT PRIMARY KEY)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, r)
	c.Stop(t, c.Primary)
	c.Promote(t, c.Replicas[0])
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := r.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING`)
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes never reached the promoted replica: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := r.Status(); st[1].Role != "primary" || st[0].Role != "down" {
		t.Errorf("status after failover: %+v", st)
	}
}

// waitReplicas waits until every replica is healthy and has replayed
// everything the primary has written so far (the router's last probe may
// predate the latest write, so its lag alone is not enough).
func waitReplicas(t *testing.T, r *pgrepl.Router) {
	t.Helper()
	var s string
	if err := r.Primary().QueryRow(`SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	target, err := pgrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, st := range r.Status() {
			replayed, _ := pgrepl.ParseLSN(st.Replayed)
			if st.Role == "down" || st.Role == "replica" && replayed < target {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not streaming: %+v", r.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
