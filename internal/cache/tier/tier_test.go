package tier

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/blueprint-media/blueprint/internal/cache/redisl2"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

func newTier(t *testing.T, cfg Config[string]) *Tier[string] {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Minute
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Stop(context.Background()) })
	return tr
}

// TestStampede: many concurrent misses of one key make one loader call.
func TestStampede(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	tr := newTier(t, Config[string]{Load: func(ctx context.Context, key string) (string, error) {
		calls.Add(1)
		<-release
		return "value of " + key, nil
	}})
	var wg sync.WaitGroup
	var started sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		started.Add(1)
		wg.Go(func() {
			started.Done()
			v, err := tr.Get(context.Background(), "hot")
			if err == nil && v != "value of hot" {
				err = fmt.Errorf("got %q", v)
			}
			errs <- err
		})
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond) // let them all reach the miss
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d loader calls for 100 concurrent misses, want 1", n)
	}
	if _, err := tr.Get(context.Background(), "hot"); err != nil || calls.Load() != 1 {
		t.Errorf("a later Get loaded again (%d calls, %v)", calls.Load(), err)
	}
}

// TestNegativeCaching: "not found" is cached for NegativeTTL, then asked
// again; other errors are never cached.
func TestNegativeCaching(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var calls atomic.Int32
	failing := atomic.Bool{}
	tr := newTier(t, Config[string]{NegativeTTL: 10 * time.Second, Now: clock, Load: func(ctx context.Context, key string) (string, error) {
		calls.Add(1)
		if failing.Load() {
			return "", errors.New("database down")
		}
		return "", ErrNotFound
	}})
	for range 50 {
		if _, err := tr.Get(context.Background(), "ghost"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v, want ErrNotFound", err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("%d loads of a missing key within NegativeTTL, want 1", calls.Load())
	}
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	tr.Get(context.Background(), "ghost")
	if calls.Load() != 2 {
		t.Errorf("after NegativeTTL: %d loads, want 2", calls.Load())
	}
	failing.Store(true)
	for range 3 {
		if _, err := tr.Get(context.Background(), "other"); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("Get with a failing loader: %v", err)
		}
	}
	if calls.Load() != 5 {
		t.Errorf("errors were cached: %d loads, want 5", calls.Load())
	}
}

// TestXFetchRefreshesBeforeExpiry: a hot key read near its expiry is
// reloaded in the background while readers keep getting the current value
// without waiting.
func TestXFetchRefreshesBeforeExpiry(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	now := start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var version atomic.Int32
	// A fixed draw U = 0.5 makes the refresh gap δ·β·ln 2 ≈ 1.39 s: no
	// refresh while more than that is left, a refresh once less is.
	tr := newTier(t, Config[string]{TTL: 10 * time.Second, Beta: 1, Now: clock, Uniform: func() float64 { return 0.5 }, Load: func(ctx context.Context, key string) (string, error) {
		v := version.Add(1)
		mu.Lock()
		now = now.Add(2 * time.Second) // the load takes 2 s of the fake clock: delta
		mu.Unlock()
		return fmt.Sprint("v", v), nil
	}})
	if v, _ := tr.Get(context.Background(), "k"); v != "v1" {
		t.Fatalf("first Get: %q", v)
	}
	// Early in its life the key is never refreshed.
	for range 200 {
		tr.Get(context.Background(), "k")
	}
	if version.Load() != 1 {
		t.Fatalf("refreshed early in the entry's life (%d loads)", version.Load())
	}
	// 1 s before expiry, with delta = 2 s, the gap (1.39 s) reaches the
	// expiry: a read triggers a refresh, and every read still returns a
	// value at once.
	mu.Lock()
	now = start.Add(2*time.Second + 9*time.Second)
	mu.Unlock()
	for range 50 {
		if v, err := tr.Get(context.Background(), "k"); err != nil || v == "" {
			t.Fatalf("Get near expiry: %q, %v", v, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for version.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if version.Load() < 2 {
		t.Fatal("no early refresh near expiry")
	}
	if st := tr.Stats(); st.Refreshes < 1 {
		t.Errorf("stats %+v: no refresh counted", st)
	}
}

// kv is the source of truth of the write-strategy tests: one table on
// SQLite or PostgreSQL.
type kv struct {
	db          *sql.DB
	placeholder func(int) string
	saves       atomic.Int32
	loads       atomic.Int32
}

func (s *kv) load(ctx context.Context, key string) (string, error) {
	s.loads.Add(1)
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = "+s.placeholder(1), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

func (s *kv) save(ctx context.Context, key, v string) error {
	s.saves.Add(1)
	_, err := s.db.ExecContext(ctx, "INSERT INTO kv(k, v) VALUES ("+s.placeholder(1)+", "+s.placeholder(2)+") ON CONFLICT (k) DO UPDATE SET v = excluded.v", key, v)
	return err
}

func (s *kv) stored(t *testing.T, key string) string {
	t.Helper()
	var v string
	if err := s.db.QueryRow("SELECT v FROM kv WHERE k = "+s.placeholder(1), key).Scan(&v); err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return v
}

func engines(t *testing.T) map[string]func(t *testing.T) *kv {
	return map[string]func(t *testing.T) *kv{
		"sqlite": func(t *testing.T) *kv {
			db := testenv.Store(t)
			if _, err := db.W.Exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			return &kv{db: db.W, placeholder: func(int) string { return "?" }}
		},
		"postgres": func(t *testing.T) *kv {
			db, err := sql.Open("pgx", testenv.StartPostgres(t, false))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			return &kv{db: db, placeholder: func(i int) string { return fmt.Sprintf("$%d", i) }}
		},
	}
}

// TestWriteStrategies runs write-through, write-around and write-back
// against SQLite and PostgreSQL.
func TestWriteStrategies(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			tr := newTier(t, Config[string]{Load: s.load, Save: s.save, MaxDirty: 3, FlushInterval: time.Hour})

			// Write-through: saved, and the next read is a hit.
			if err := tr.WriteThrough(ctx, "a", "1"); err != nil {
				t.Fatal(err)
			}
			if s.stored(t, "a") != "1" {
				t.Error("write-through did not save")
			}
			if v, _ := tr.Get(ctx, "a"); v != "1" || s.loads.Load() != 0 {
				t.Errorf("read after write-through: %q with %d loads, want a hit", v, s.loads.Load())
			}

			// Write-around: saved, and the cached copy is gone: the next read loads the new value.
			if err := tr.WriteAround(ctx, "a", "2"); err != nil {
				t.Fatal(err)
			}
			if v, _ := tr.Get(ctx, "a"); v != "2" || s.loads.Load() != 1 {
				t.Errorf("read after write-around: %q with %d loads, want a load of the new value", v, s.loads.Load())
			}

			// Write-back: cached now, saved at the flush.
			before := s.saves.Load()
			if err := tr.WriteBack(ctx, "b", "x"); err != nil {
				t.Fatal(err)
			}
			if v, _ := tr.Get(ctx, "b"); v != "x" {
				t.Errorf("read after write-back: %q", v)
			}
			if s.stored(t, "b") != "" || s.saves.Load() != before {
				t.Error("write-back saved at once")
			}
			tr.WriteBack(ctx, "b", "y") // coalesced with the first
			tr.WriteBack(ctx, "c", "z")
			tr.WriteBack(ctx, "d", "w")
			if tr.Dirty() != 3 {
				t.Fatalf("%d dirty keys, want 3", tr.Dirty())
			}
			// Bounded: a fourth key flushes the three first.
			tr.WriteBack(ctx, "e", "v")
			if s.stored(t, "b") != "y" || s.stored(t, "d") != "w" || tr.Dirty() != 1 {
				t.Errorf("the full buffer was not flushed: b=%q d=%q dirty=%d", s.stored(t, "b"), s.stored(t, "d"), tr.Dirty())
			}
			// Stop flushes what is left.
			if err := tr.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if s.stored(t, "e") != "v" {
				t.Error("Stop did not flush the write-back buffer")
			}
		})
	}
}

// TestWriteBackFlushFailureKeepsDirty: a failed flush keeps the keys dirty
// and a later one saves them.
func TestWriteBackFlushFailureKeepsDirty(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	saved := map[string]string{}
	var mu sync.Mutex
	tr := newTier(t, Config[string]{Load: func(context.Context, string) (string, error) { return "", ErrNotFound },
		Flush: func(ctx context.Context, batch map[string]string) error {
			if down.Load() {
				return errors.New("database down")
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range batch {
				saved[k] = v
			}
			return nil
		}, FlushInterval: time.Hour})
	ctx := context.Background()
	tr.WriteBack(ctx, "views:1", "10")
	if err := tr.FlushDirty(ctx); err == nil {
		t.Fatal("flush against a failing database succeeded")
	}
	tr.WriteBack(ctx, "views:2", "5")
	if tr.Dirty() != 2 {
		t.Fatalf("%d dirty after a failed flush, want 2", tr.Dirty())
	}
	down.Store(false)
	if err := tr.FlushDirty(ctx); err != nil {
		t.Fatal(err)
	}
	if saved["views:1"] != "10" || saved["views:2"] != "5" || tr.Dirty() != 0 {
		t.Errorf("saved %v, dirty %d", saved, tr.Dirty())
	}
}

// TestInvalidationAcrossThreeNodes: three processes' L1s over one shared
// Redis L2 (two nodes); a write on one node is seen by the other two once
// the invalidation arrives. The latency is logged (the goal is p99 under
// 50 ms on one machine), not asserted.
func TestInvalidationAcrossThreeNodes(t *testing.T) {
	r1, r2 := testenv.StartRedis(t), testenv.StartRedis(t)
	q := testenv.Queue(t)
	source := map[string]string{"video:1": "v0"}
	var mu sync.Mutex
	load := func(ctx context.Context, key string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := source[key]
		if !ok {
			return "", ErrNotFound
		}
		return v, nil
	}
	save := func(ctx context.Context, key, v string) error {
		mu.Lock()
		defer mu.Unlock()
		source[key] = v
		return nil
	}
	var nodes []*Tier[string]
	for range 3 {
		fleet, err := redisl2.New(redisl2.Config{Addrs: []string{r1.Addr, r2.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		fleet.Start(context.Background())
		t.Cleanup(func() { fleet.Stop(context.Background()) })
		nodes = append(nodes, newTier(t, Config[string]{Name: "videos", TTL: time.Hour, Load: load, Save: save,
			Remote: fleet, Invalidator: NewNATS(q.Conn())}))
	}
	ctx := context.Background()
	var lat []time.Duration
	for round := range 200 {
		for _, n := range nodes {
			if _, err := n.Get(ctx, "video:1"); err != nil {
				t.Fatal(err)
			}
		}
		writer := nodes[round%3]
		want := fmt.Sprint("v", round+1)
		start := time.Now()
		var err error
		if round%2 == 0 {
			err = writer.WriteThrough(ctx, "video:1", want)
		} else {
			err = writer.WriteAround(ctx, "video:1", want)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			deadline := time.Now().Add(5 * time.Second)
			for {
				v, err := n.Get(ctx, "video:1")
				if err != nil {
					t.Fatal(err)
				}
				if v == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: a node still serves %q, want %q", round, v, want)
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("write → all three L1s fresh: p50 %v, p99 %v, max %v (goal p99 < 50ms)", lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	var inv uint64
	for _, n := range nodes {
		inv += n.Stats().Invalidations
	}
	if inv == 0 {
		t.Error("no invalidation message was applied")
	}
}

// TestL2NodeDownAndBack: with one of two Redis nodes killed, reads and
// writes go on (its keys are routed to the other node or loaded), and a
// node that comes back is flushed before it serves, so it cannot return a
// value that changed while it was away.
func TestL2NodeDownAndBack(t *testing.T) {
	r1, r2 := testenv.StartRedis(t), testenv.StartRedis(t)
	fleet, err := redisl2.New(redisl2.Config{Addrs: []string{r1.Addr, r2.Addr}, CheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fleet.Start(context.Background())
	t.Cleanup(func() { fleet.Stop(context.Background()) })
	ctx := context.Background()
	if fleet.Up() != 2 {
		t.Fatalf("%d nodes up, want 2", fleet.Up())
	}
	// A key owned by r1.
	var key string
	for i := 0; ; i++ {
		key = fmt.Sprint("k", i)
		if fleet.Node(key) == r1.Addr {
			break
		}
	}
	if err := fleet.Set(ctx, key, []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	r1.Stop()
	fleet.Get(ctx, key) // fails and marks r1 down
	if fleet.Up() != 1 || fleet.Node(key) != r2.Addr {
		t.Fatalf("after r1 died: %d up, key on %q", fleet.Up(), fleet.Node(key))
	}
	if err := fleet.Set(ctx, key, []byte("new"), time.Hour); err != nil {
		t.Fatalf("set with a node down: %v", err)
	}
	if b, ok, err := fleet.Get(ctx, key); err != nil || !ok || string(b) != "new" {
		t.Fatalf("get with a node down: %q %v %v", b, ok, err)
	}
	r1.Start() // an empty server; a real one might come back with "old"
	raw := testenv.RedisClient(t, r1.Addr)
	raw.Set(ctx, key, "old", time.Hour) // simulate that stale copy
	deadline := time.Now().Add(5 * time.Second)
	for fleet.Up() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("r1 never came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, ok, _ := fleet.Get(ctx, key); ok && string(b) == "old" {
		t.Fatal("the node that came back served a stale value")
	}
}

// TestCounterWriteBack: increments from many goroutines add up, reach the
// database in few batches, survive a failed flush, and Stop flushes.
func TestCounterWriteBack(t *testing.T) {
	var mu sync.Mutex
	db := map[string]int64{}
	flushes := 0
	var down atomic.Bool
	c, err := NewCounter(CounterConfig{FlushInterval: time.Hour, MaxKeys: 100, Flush: func(ctx context.Context, d map[string]int64) error {
		if down.Load() {
			return errors.New("database down")
		}
		mu.Lock()
		defer mu.Unlock()
		flushes++
		for k, n := range d {
			db[k] += n
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c.Add(context.Background(), fmt.Sprint("video:", i%10), 1)
			}
		})
	}
	wg.Wait()
	down.Store(true)
	if err := c.Flush(context.Background()); err == nil {
		t.Fatal("flush against a failing database succeeded")
	}
	down.Store(false)
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if got := db[fmt.Sprint("video:", i)]; got != 800 {
			t.Errorf("video:%d = %d, want 800", i, got)
		}
	}
	if flushes != 1 {
		t.Errorf("%d flushes for 8000 increments, want 1", flushes)
	}
}
