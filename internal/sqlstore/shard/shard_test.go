package shard_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

const ddl = `
CREATE TABLE videos (
	shard      integer NOT NULL,
	id         bigint NOT NULL,
	title      text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (shard, id)
);
CREATE TABLE comments (
	shard    integer NOT NULL,
	id       bigint NOT NULL,
	video_id bigint NOT NULL,
	seq      bigserial,
	body     text NOT NULL,
	PRIMARY KEY (shard, id)
);
CREATE TABLE settings (key text PRIMARY KEY, value text); -- global: no shard column, never moved
`

type env struct {
	catURL string
	a, b   *sql.DB
	urls   map[string]string
	gen    *idgen.Generator
	cat    *shard.Catalog
}

func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	var aURL, bURL string
	var wg sync.WaitGroup
	wg.Go(func() { aURL = testenv.StartPostgresLogical(t) })
	wg.Go(func() { bURL = testenv.StartPostgresLogical(t) })
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	e := &env{a: open(t, aURL), b: open(t, bURL), urls: map[string]string{"a": aURL, "b": bURL}, gen: idgentest.New(t)}
	for _, db := range []*sql.DB{e.a, e.b} {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	// The catalog lives in its own database on server a.
	if _, err := e.a.ExecContext(ctx, `CREATE DATABASE catalog`); err != nil {
		t.Fatal(err)
	}
	e.catURL = strings.Replace(aURL, "/postgres?", "/catalog?", 1)
	cat, err := shard.OpenCatalog(ctx, e.catURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	e.cat = cat
	if _, err := cat.Init(ctx, []shard.ClusterConfig{{Name: "a", Primary: aURL}, {Name: "b", Primary: bURL}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) router(t *testing.T) (*shard.Router, *prometheus.Registry) {
	t.Helper()
	return e.routerWith(t, shard.Config{Catalog: e.catURL, PollInterval: 200 * time.Millisecond, PauseTimeout: 15 * time.Second})
}

func (e *env) routerWith(t *testing.T, cfg shard.Config) (*shard.Router, *prometheus.Registry) {
	t.Helper()
	r, err := shard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	return r, reg
}

func insertVideo(ctx context.Context, r *shard.Router, id int64, title string) error {
	h, err := r.For(id)
	if err != nil {
		return err
	}
	_, err = h.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO videos (shard, id, title) VALUES ($1, $2, $3)`, h.Shard(), id, title); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO comments (shard, id, video_id, body) VALUES ($1, $2, $2, $3)`, h.Shard(), id, "first")
		return err
	})
	return err
}

func countID(t *testing.T, db *sql.DB, s int, id int64) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM videos WHERE shard = $1 AND id = $2`, s, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestShard(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	r, reg := e.router(t)

	t.Run("Map", func(t *testing.T) {
		m := r.Map()
		if got := len(m.ShardsOf("a")) + len(m.ShardsOf("b")); got != shard.Shards {
			t.Fatalf("assigned %d shards, want %d", got, shard.Shards)
		}
		if m.Owner[0] != "a" || m.Owner[shard.Shards-1] != "b" || len(m.ShardsOf("a")) != shard.Shards/2 {
			t.Fatalf("uneven initial assignment: a has %d, shard 0 on %s", len(m.ShardsOf("a")), m.Owner[0])
		}
		v0, _ := e.cat.Version(ctx)
		// Init again is idempotent for the map but each registration is a change.
		if _, err := e.cat.Init(ctx, []shard.ClusterConfig{{Name: "a", Primary: e.urls["a"]}, {Name: "b", Primary: e.urls["b"]}}); err != nil {
			t.Fatal(err)
		}
		v1, _ := e.cat.Version(ctx)
		m2, err := e.cat.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v1 <= v0 || m2.Version != v1 || m2.Owner != m.Owner {
			t.Fatalf("versions %d → %d (loaded %d), owners changed %v", v0, v1, m2.Version, m2.Owner != m.Owner)
		}
		if _, err := r.ForShard(shard.Shards); err == nil {
			t.Fatal("ForShard(4096) accepted")
		}
		if _, err := r.For(-1); err == nil {
			t.Fatal("For(-1) accepted")
		}
		for _, c := range r.Collectors() {
			problems, err := testutil.CollectAndLint(c)
			if err != nil || len(problems) > 0 {
				t.Errorf("metrics lint: %v %v", err, problems)
			}
		}
	})

	t.Run("RoutingByID", func(t *testing.T) {
		for _, s := range []int{0, 5, 2047, 2048, 3001, 4095} {
			id, err := e.gen.Next(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := insertVideo(ctx, r, id, "routed"); err != nil {
				t.Fatal(err)
			}
			h, _ := r.For(id)
			want, other := e.a, e.b
			if s >= shard.Shards/2 {
				want, other = e.b, e.a
			}
			if h.Cluster() != map[bool]string{true: "a", false: "b"}[s < shard.Shards/2] {
				t.Errorf("shard %d routed to %s", s, h.Cluster())
			}
			if countID(t, want, s, id) != 1 || countID(t, other, s, id) != 0 {
				t.Errorf("id %d (shard %d) not exactly on its owner", id, s)
			}
			rd, err := h.Reader(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if countID(t, rd, s, id) != 1 {
				t.Errorf("reader of shard %d does not see id %d", s, id)
			}
		}
		if n := testutil.ToFloat64(mustVec(t, reg, "blueprint_shard_queries_total", "a", "write")); n < 3 {
			t.Errorf("queries_total{a,write} = %v, want ≥ 3", n)
		}
	})

	t.Run("FanOutNewest", func(t *testing.T) {
		var all []int64
		for range 300 {
			s := 16 + rand.IntN(shard.Shards-16) // shards 0-15 are left to the move tests
			id, err := e.gen.Next(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := insertVideo(ctx, r, id, "fan"); err != nil {
				t.Fatal(err)
			}
			all = append(all, id)
		}
		// A row of a shard that b does not own (as a kept or half-copied
		// move leaves): newest of all, and must not be returned.
		stray, _ := e.gen.Next(1)
		if _, err := e.b.Exec(`INSERT INTO videos (shard, id, title) VALUES (1, $1, 'stray')`, stray); err != nil {
			t.Fatal(err)
		}
		defer e.b.Exec(`DELETE FROM videos WHERE id = $1`, stray)
		var before []int64
		for _, db := range []*sql.DB{e.a, e.b} {
			rows, err := db.Query(`SELECT id FROM videos WHERE title <> 'stray'`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id int64
				rows.Scan(&id)
				before = append(before, id)
			}
			rows.Close()
		}
		slices.Sort(before)
		slices.Reverse(before)
		const k = 25
		got, err := shard.Newest(ctx, r, k, func(ctx context.Context, c shard.ClusterView, k int) ([]int64, error) {
			rows, err := c.DB.QueryContext(ctx, `SELECT id FROM videos WHERE shard = ANY ($1) ORDER BY id DESC LIMIT $2`, c.Shards, k)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var ids []int64
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return nil, err
				}
				ids = append(ids, id)
			}
			return ids, rows.Err()
		}, func(id int64) int64 { return id })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, before[:k]) {
			t.Fatalf("newest %d:\n got %v\nwant %v", k, got, before[:k])
		}
	})

	t.Run("MoveUnderWriteLoad", func(t *testing.T) {
		testMoveUnderLoad(t, e, r, reg)
	})

	t.Run("ResumeAfterKill", func(t *testing.T) {
		const s = 9
		seed(t, e, s, 3000)
		kctx, cancel := context.WithCancel(ctx)
		_, err := shard.Move(kctx, e.cat, shard.MoveOptions{Shard: s, To: "b", Progress: func(p shard.Progress) {
			if p.Step == "copy" {
				cancel() // the operator's ^C while the copy runs
			}
		}})
		if err == nil {
			t.Fatal("cancelled move succeeded")
		}
		moves, _ := e.cat.Moves(ctx, 1)
		if len(moves) != 1 || moves[0].FinishedAt != nil || moves[0].Shard != s {
			t.Fatalf("no unfinished move recorded: %+v", moves)
		}
		if _, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: s, To: "a"}); !errors.Is(err, shard.ErrMoveConflict) {
			t.Fatalf("move to another target during an unfinished move: %v", err)
		}
		res, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: s, To: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Resumed || res.Rows != 6000 {
			t.Fatalf("resumed=%v rows=%d, want resumed and 6000 (3000 videos + 3000 comments)", res.Resumed, res.Rows)
		}
		assertOnlyOn(t, e.b, e.a, s, 3000)

		// Interrupted in the cutover pause: the pause is undone (source
		// unfenced, shard active on the source), a rerun finishes.
		const s2 = 13
		seed(t, e, s2, 1000)
		kctx, cancel = context.WithCancel(ctx)
		if _, err := shard.Move(kctx, e.cat, shard.MoveOptions{Shard: s2, To: "b", Progress: func(p shard.Progress) {
			if p.Step == "pause" {
				cancel()
			}
		}}); err == nil {
			t.Fatal("move cancelled in the pause succeeded")
		}
		m, _ := e.cat.Load(ctx)
		if m.Owner[s2] != "a" || m.State[s2] != shard.StateActive {
			t.Fatalf("after an interrupted cutover shard %d is %s on %s", s2, m.State[s2], m.Owner[s2])
		}
		id, _ := e.gen.Next(s2)
		if _, err := e.a.Exec(`INSERT INTO videos (shard, id, title) VALUES ($1, $2, 'x')`, s2, id); err != nil {
			t.Fatalf("source still fenced after the undone cutover: %v", err)
		}
		if _, err := e.a.Exec(`INSERT INTO comments (shard, id, video_id, body) VALUES ($1, $2, $2, 'x')`, s2, id); err != nil {
			t.Fatal(err)
		}
		res, err = shard.Move(ctx, e.cat, shard.MoveOptions{Shard: s2, To: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Resumed || res.Rows != 2002 {
			t.Fatalf("resumed=%v rows=%d, want resumed and 2002", res.Resumed, res.Rows)
		}
		assertOnlyOn(t, e.b, e.a, s2, 1001)
	})

	t.Run("PauseBudgetExceeded", func(t *testing.T) {
		const s = 15
		seed(t, e, s, 200)
		// Another mover holding the shard's lock (as Move's connection does).
		conn, err := e.cat.DB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conn.ExecContext(ctx, `SELECT pg_advisory_lock(72616403, $1)`, s)
		if _, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: s, To: "b"}); !errors.Is(err, shard.ErrMoveConflict) {
			t.Fatalf("move while another mover holds the shard: %v", err)
		}
		conn.ExecContext(ctx, `SELECT pg_advisory_unlock(72616403, $1)`, s)
		conn.Close()
		if _, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: s, To: "b", PauseBudget: time.Nanosecond}); err == nil {
			t.Fatal("a cutover over its budget succeeded")
		}
		m, _ := e.cat.Load(ctx)
		if m.Owner[s] != "a" || m.State[s] != shard.StateActive {
			t.Fatalf("after a cutover over budget shard %d is %s on %s", s, m.State[s], m.Owner[s])
		}
		id, _ := e.gen.Next(s)
		if err := insertVideo(ctx, r, id, "after the undone cutover"); err != nil {
			t.Fatal(err)
		}
		if countID(t, e.a, s, id) != 1 {
			t.Fatal("write after the undone cutover not on the source")
		}
		res, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: s, To: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Resumed {
			t.Error("second run did not resume the recorded move")
		}
		assertOnlyOn(t, e.b, e.a, s, 201)
	})

	t.Run("Abort", func(t *testing.T) {
		const s = 11
		seed(t, e, s, 500)
		kctx, cancel := context.WithCancel(ctx)
		if _, err := shard.Move(kctx, e.cat, shard.MoveOptions{Shard: s, To: "b", Progress: func(p shard.Progress) {
			if p.Step == "copy" {
				cancel()
			}
		}}); err == nil {
			t.Fatal("cancelled move succeeded")
		}
		if err := shard.Abort(ctx, e.cat, s, shard.MoveOptions{}); err != nil {
			t.Fatal(err)
		}
		m, _ := e.cat.Load(ctx)
		if m.Owner[s] != "a" || m.State[s] != shard.StateActive {
			t.Fatalf("after abort shard %d is %s on %s", s, m.State[s], m.Owner[s])
		}
		var subs int
		e.b.QueryRow(`SELECT count(*) FROM pg_subscription`).Scan(&subs)
		if subs != 0 {
			t.Fatalf("%d subscriptions left on b", subs)
		}
		assertOnlyOn(t, e.a, e.b, s, 500)
		id, _ := e.gen.Next(s)
		if err := insertVideo(ctx, r, id, "after abort"); err != nil {
			t.Fatal(err)
		}
	})
}

func mustVec(t *testing.T, reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := true
			for i, lp := range m.GetLabel() {
				if i < len(labels) && lp.GetValue() != labels[i] {
					ok = false
				}
			}
			if ok {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return nil
}

// seed inserts n videos and n comments on shard s directly on its owner a.
func seed(t *testing.T, e *env, s, n int) []int64 {
	t.Helper()
	var ids []int64
	for len(ids) < n {
		b, err := e.gen.NextN(s, min(1000, n-len(ids)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b...)
	}
	if _, err := e.a.Exec(`INSERT INTO videos (shard, id, title) SELECT $1, id, 'seed ' || id FROM unnest($2::bigint[]) id`, s, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Exec(`INSERT INTO comments (shard, id, video_id, body) SELECT $1, id, id, repeat('c', 100) FROM unnest($2::bigint[]) id`, s, ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func assertOnlyOn(t *testing.T, on, off *sql.DB, s, want int) {
	t.Helper()
	for _, tbl := range []string{"videos", "comments"} {
		var nOn, nOff, dup int
		on.QueryRow(`SELECT count(*), count(*) - count(DISTINCT id) FROM `+tbl+` WHERE shard = $1`, s).Scan(&nOn, &dup)
		off.QueryRow(`SELECT count(*) FROM `+tbl+` WHERE shard = $1`, s).Scan(&nOff)
		if nOn != want || nOff != 0 || dup != 0 {
			t.Errorf("%s of shard %d: %d on the owner (want %d, %d duplicates), %d on the other cluster", tbl, s, nOn, want, dup, nOff)
		}
	}
}

func testMoveUnderLoad(t *testing.T, e *env, r *shard.Router, reg *prometheus.Registry) {
	ctx := context.Background()
	const moving = 7
	seedIDs := seed(t, e, moving, 20000)
	r2, _ := e.router(t) // a second router instance (another process in production)
	// A third that never hears of the move by itself (no LISTEN, no
	// polling within the test): only the source's fence tells it.
	r3, reg3 := e.routerWith(t, shard.Config{Catalog: e.catURL, PollOnly: true, PollInterval: time.Hour, PauseTimeout: 15 * time.Second})

	var (
		mu      sync.Mutex
		acked   = map[int][]int64{}
		werrs   []error
		updates atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	shards := []int{moving, moving, moving, 100, 3000}
	for w := range 4 {
		wg.Go(func() {
			rt := []*shard.Router{r, r2, r, r3}[w]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := shards[(w+i)%len(shards)]
				id, err := e.gen.Next(s)
				if err != nil {
					mu.Lock()
					werrs = append(werrs, err)
					mu.Unlock()
					return
				}
				if err := insertVideo(ctx, rt, id, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					mu.Lock()
					werrs = append(werrs, fmt.Errorf("insert %d on shard %d: %w", id, s, err))
					mu.Unlock()
					continue
				}
				mu.Lock()
				acked[s] = append(acked[s], id)
				mu.Unlock()
				if i%5 == 0 { // an update of an existing row of the moving shard
					target := seedIDs[rand.IntN(len(seedIDs))]
					h, _ := rt.For(target)
					if _, err := h.Write(ctx, func(tx *sql.Tx) error {
						_, err := tx.ExecContext(ctx, `UPDATE videos SET title = title || '+' WHERE shard = $1 AND id = $2`, h.Shard(), target)
						return err
					}); err != nil {
						mu.Lock()
						werrs = append(werrs, fmt.Errorf("update %d: %w", target, err))
						mu.Unlock()
						continue
					}
					updates.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	loadStart := time.Now()
	var seqA int64
	e.a.QueryRow(`SELECT last_value FROM comments_seq_seq`).Scan(&seqA)
	res, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: moving, To: "b", Progress: func(p shard.Progress) {
		t.Logf("%8v %-8s %s", p.Elapsed.Round(time.Millisecond), p.Step, p.Msg)
	}})
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // writers keep going on the new owner
	close(stop)
	wg.Wait()
	for _, err := range werrs {
		t.Errorf("writer: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("moved shard %d: %d rows (%d tables), copy %v = %.0f rows/s; write pause %v (fence %v, catch-up %v, verify %v); map version %d; %d source rows deleted; %d sequences reset",
		moving, res.Rows, len(res.Tables), res.Copy.Round(time.Millisecond), res.RowsPerSecond(), res.Pause.Round(time.Microsecond),
		res.Fence.Round(time.Microsecond), res.CatchUp.Round(time.Microsecond), res.Verify.Round(time.Microsecond), res.Version, res.Deleted, res.Sequence)
	t.Logf("writers: %d inserts acked on the moving shard, %d on others, %d updates; %.0f write transactions/s during the move",
		len(acked[moving]), len(acked[100])+len(acked[3000]), updates.Load(),
		float64(len(acked[moving])+len(acked[100])+len(acked[3000])+int(updates.Load()))/time.Since(loadStart).Seconds())
	if len(acked[moving]) == 0 || updates.Load() == 0 {
		t.Fatal("no write load on the moving shard")
	}

	// Every acknowledged insert exactly once, on its owner only.
	check := func(db *sql.DB, other *sql.DB, s int, ids []int64) {
		var got, dup, elsewhere int
		if err := db.QueryRow(`SELECT count(*), count(*) - count(DISTINCT id) FROM videos WHERE shard = $1 AND id = ANY ($2)`, s, ids).Scan(&got, &dup); err != nil {
			t.Fatal(err)
		}
		other.QueryRow(`SELECT count(*) FROM videos WHERE shard = $1 AND id = ANY ($2)`, s, ids).Scan(&elsewhere)
		if got != len(ids) || dup != 0 || elsewhere != 0 {
			t.Errorf("shard %d: %d of %d acknowledged inserts on the owner, %d duplicates, %d on the other cluster", s, got, len(ids), dup, elsewhere)
		}
	}
	check(e.b, e.a, moving, append(slices.Clone(seedIDs), acked[moving]...))
	check(e.a, e.b, 100, acked[100])
	check(e.b, e.a, 3000, acked[3000])
	var total int
	e.b.QueryRow(`SELECT count(*) FROM videos WHERE shard = $1`, moving).Scan(&total)
	if total != len(seedIDs)+len(acked[moving]) {
		t.Errorf("shard %d on b has %d videos, want %d (seed + acknowledged)", moving, total, len(seedIDs)+len(acked[moving]))
	}
	var vrows int64
	for _, tc := range res.Tables {
		if tc.Table == `"public"."videos"` {
			vrows = tc.Rows
		}
	}
	if vrows < int64(len(seedIDs)) || res.Pause <= 0 || res.Version <= 0 {
		t.Errorf("move result: videos %d, pause %v, version %d", vrows, res.Pause, res.Version)
	}

	// The source is fenced for the shard: a write there (a router on an
	// old map) is refused, not lost.
	id, _ := e.gen.Next(moving)
	_, err = e.a.Exec(`INSERT INTO videos (shard, id, title) VALUES ($1, $2, 'stale')`, moving, id)
	if !shard.IsFenced(err) {
		t.Errorf("write of the moved shard on the source: %v, want the fence (SQLSTATE %s)", err, shard.FencedCode)
	}
	// Other shards on the source are not fenced.
	id100, _ := e.gen.Next(100)
	if _, err := e.a.Exec(`INSERT INTO videos (shard, id, title) VALUES (100, $1, 'ok')`, id100); err != nil {
		t.Errorf("write of another shard on the source: %v", err)
	}
	// Sequences were carried over.
	var seqB int64
	e.b.QueryRow(`SELECT last_value FROM comments_seq_seq`).Scan(&seqB)
	if seqB < seqA {
		t.Errorf("comments sequence on b at %d, below the source's %d", seqB, seqA)
	}
	// The second router follows the new map.
	deadline := time.Now().Add(10 * time.Second)
	for h, _ := r2.ForShard(moving); h.Cluster() != "b"; {
		if time.Now().After(deadline) {
			t.Fatalf("second router still routes shard %d to %s (map version %d)", moving, h.Cluster(), r2.Map().Version)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := r2.Map().Version; v < res.Version {
		t.Errorf("second router at version %d, move flipped at %d", v, res.Version)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "blueprint_shard_write_pause_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			t.Logf("router 1: %d writes waited for the pause, %.1f ms in total", h.GetSampleCount(), h.GetSampleSum()*1000)
		}
	}
	fenced := testutil.ToFloat64(mustVec(t, reg3, "blueprint_shard_fenced_retries_total"))
	t.Logf("stale router: %v writes refused by the fence and retried; now at map version %d", fenced, r3.Map().Version)
	if fenced < 1 {
		t.Error("the stale router's writes never met the fence")
	}
	if h, _ := r3.ForShard(moving); h.Cluster() != "b" {
		t.Errorf("stale router routes shard %d to %s after its writes were fenced", moving, h.Cluster())
	}

	// Move it back: the fence on a must be lifted for the shard.
	back, err := shard.Move(ctx, e.cat, shard.MoveOptions{Shard: moving, To: "a", VerifyAfterFlip: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved back (verified after the flip): %d rows, pause %v, verify %v", back.Rows, back.Pause.Round(time.Microsecond), back.Verify.Round(time.Microsecond))
	if back.Rows != int64(2*total) {
		t.Errorf("moved back %d rows, want %d", back.Rows, 2*total)
	}
	id2, _ := e.gen.Next(moving)
	if err := insertVideo(ctx, r, id2, "back home"); err != nil {
		t.Fatal(err)
	}
	if countID(t, e.a, moving, id2) != 1 {
		t.Error("write after moving back did not land on a")
	}
	assertOnlyOn(t, e.a, e.b, moving, total+1)
}

// TestReplicaRouting runs one cluster with a streaming replica: writes go
// to the primary and return a WAL position, reads that pass it see the row
// (from the replica once it has replayed it, else from the primary).
func TestReplicaRouting(t *testing.T) {
	ctx := context.Background()
	c := testenv.StartPGCluster(t, 1)
	p := open(t, c.Primary.URL)
	if _, err := p.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(`CREATE DATABASE catalog`); err != nil {
		t.Fatal(err)
	}
	catURL := strings.Replace(c.Primary.URL, "/postgres?", "/catalog?", 1)
	cat, err := shard.OpenCatalog(ctx, catURL)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Init(ctx, []shard.ClusterConfig{{Name: "r", Primary: c.Primary.URL, Replicas: []string{c.Replicas[0].URL}}}); err != nil {
		t.Fatal(err)
	}
	r, err := shard.New(shard.Config{Catalog: catURL})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	if got := r.Map().Clusters["r"].Replicas; len(got) != 1 || got[0] != c.Replicas[0].URL {
		t.Fatalf("replicas in the map: %v", got)
	}
	gen := idgentest.New(t)
	for i := range 50 {
		id, _ := gen.Next(i * 80)
		h, _ := r.For(id)
		lsn, err := h.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO videos (shard, id, title) VALUES ($1, $2, 'x')`, h.Shard(), id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if lsn == 0 {
			t.Fatal("write through a cluster with replicas returned no WAL position")
		}
		db, err := h.Reader(ctx, lsn)
		if err != nil {
			t.Fatal(err)
		}
		if countID(t, db, h.Shard(), id) != 1 {
			t.Fatalf("read after write %d does not see it", i)
		}
	}
	mfs, _ := reg.Gather()
	var reads float64
	for _, mf := range mfs {
		if mf.GetName() == "blueprint_shard_queries_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "role" && strings.HasPrefix(l.GetValue(), "read_") {
						reads += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if reads != 50 {
		t.Errorf("%v reads counted, want 50", reads)
	}
}
