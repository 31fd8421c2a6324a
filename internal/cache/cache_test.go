package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for TTL tests.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func mustNew[K comparable, V any](t testing.TB, cfg Config[K, V]) *Cache[K, V] {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkInvariants verifies, shard by shard, that the table, the policy and
// the expiry heap agree.
func checkInvariants[K comparable, V any](t *testing.T, c *Cache[K, V]) {
	t.Helper()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.drainReads()
		tab := s.table.Load()
		live, tombs := 0, 0
		var cost int64
		withTTL := 0
		for j := range tab.slots {
			e := tab.slots[j].e.Load()
			switch {
			case e == nil:
				continue
			case e == tab.tomb:
				tombs++
				if tab.slots[(j+1)%len(tab.slots)].e.Load() == nil {
					t.Errorf("shard %d: tombstone before an empty slot at %d", i, j)
				}
				continue
			}
			live++
			if e.gone || tab.slots[j].hash.Load() != e.Hash {
				t.Errorf("shard %d: entry %v has node %+v", i, e.Key, e.Node)
			}
			if tab.find(e.Key, e.Hash) != j || int(e.slot) != j {
				t.Errorf("shard %d: entry %v not found where it is", i, e.Key)
			}
			cost += e.Cost
			if x := e.expire.Load(); x != 0 {
				withTTL++
				// An update in place moves the expiry later and leaves
				// the heap's time as it was.
				if k := int(e.expiryIdx) - 1; k < 0 || s.expiry[k].n != &e.Node || s.expiry[k].at > x {
					t.Errorf("shard %d: entry %v not in the expiry heap at its time", i, e.Key)
				}
			}
		}
		if live != tab.live || live+tombs != tab.used || tab.used*tableMaxLoadDen > len(tab.slots)*tableMaxLoadNum {
			t.Errorf("shard %d: %d live, %d tombstones; table says %d live, %d used of %d", i, live, tombs, tab.live, tab.used, len(tab.slots))
		}
		if s.policy.Len() != live {
			t.Errorf("shard %d: policy holds %d, table %d", i, s.policy.Len(), live)
		}
		if cost != s.policy.Cost() {
			t.Errorf("shard %d: costs sum to %d, policy says %d", i, cost, s.policy.Cost())
		}
		if withTTL != len(s.expiry) {
			t.Errorf("shard %d: %d entries with a TTL, heap holds %d", i, withTTL, len(s.expiry))
		}
		for j := 1; j < len(s.expiry); j++ {
			if s.expiry[(j-1)/2].at > s.expiry[j].at {
				t.Errorf("shard %d: heap order broken at %d", i, j)
			}
		}
		if s.limits.over(s.policy.Len(), s.policy.Cost()) {
			t.Errorf("shard %d: over its limits %+v", i, s.limits)
		}
		s.mu.Unlock()
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config[string, int]
		want string
	}{
		{Config[string, int]{}, "MaxEntries or MaxBytes"},
		{Config[string, int]{MaxEntries: -1}, "MaxEntries -1"},
		{Config[string, int]{MaxBytes: -5}, "MaxBytes -5"},
		{Config[string, int]{MaxEntries: 10, TTL: -time.Second}, "TTL"},
		{Config[string, int]{MaxEntries: 10, Shards: 3}, "Shards 3"},
		{Config[string, int]{MaxEntries: 4, Shards: 8}, "less than Shards"},
		{Config[string, int]{MaxBytes: 4, Shards: 8}, "less than Shards"},
		{Config[string, int]{MaxEntries: 10, Policy: "fifo"}, `unknown policy "fifo"`},
		{Config[string, int]{MaxEntries: 10, SweepInterval: -1}, "SweepInterval"},
		{Config[string, int]{MaxEntries: 10, SweepLimit: -1}, "SweepLimit"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "cache: ") {
			t.Errorf("New(%+v) = %v, want an error about %q", tc.cfg, err, tc.want)
		}
	}
}

func TestAutoShards(t *testing.T) {
	if n := mustNew(t, Config[int, int]{MaxEntries: 1000}).Shards(); n != 1 {
		t.Errorf("1000 entries: %d shards, want 1", n)
	}
	big := mustNew(t, Config[int, int]{MaxEntries: 1_000_000}).Shards()
	if big < 4 || big&(big-1) != 0 {
		t.Errorf("1M entries: %d shards", big)
	}
	if n := mustNew(t, Config[int, int]{MaxBytes: 1 << 20}).Shards(); n != 1 {
		t.Errorf("1 MiB: %d shards, want 1", n)
	}
}

func TestGetSetDelete(t *testing.T) {
	for _, policy := range PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			c := mustNew(t, Config[string, string]{MaxEntries: 100, Policy: policy})
			if _, ok := c.Get("a"); ok {
				t.Fatal("empty cache hit")
			}
			if !c.Set("a", "1", 0) || !c.Set("b", "2", 0) {
				t.Fatal("Set refused")
			}
			if v, ok := c.Get("a"); !ok || v != "1" {
				t.Fatalf("Get(a) = %q, %v", v, ok)
			}
			c.Set("a", "one", 0)
			if v, _ := c.Get("a"); v != "one" {
				t.Fatalf("after update Get(a) = %q", v)
			}
			if c.Len() != 2 {
				t.Fatalf("Len %d", c.Len())
			}
			if !c.Delete("a") || c.Delete("a") {
				t.Fatal("Delete did not report the one removal")
			}
			if _, ok := c.Get("a"); ok {
				t.Fatal("deleted key hit")
			}
			c.Clear()
			if c.Len() != 0 {
				t.Fatalf("Len %d after Clear", c.Len())
			}
			checkInvariants(t, c)
			if c.Policy() != policy {
				t.Fatalf("Policy() = %q", c.Policy())
			}
		})
	}
}

func TestEntryBoundAndEvictionOrder(t *testing.T) {
	c := mustNew(t, Config[int, int]{MaxEntries: 3, Policy: PolicyLRU})
	for k := range 3 {
		c.Set(k, k, 0)
	}
	c.Get(0) // 1 is now least recently used
	c.Set(3, 3, 0)
	if _, ok := c.Get(1); ok {
		t.Fatal("LRU key 1 survived")
	}
	for _, k := range []int{0, 2, 3} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("key %d evicted", k)
		}
	}
	if st := c.Stats(); st.Evictions != 1 || st.Entries != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestByteBound(t *testing.T) {
	for _, policy := range PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			c := mustNew(t, Config[int, []byte]{
				MaxBytes: 1000, Policy: policy,
				Weigher: func(_ int, v []byte) int64 { return int64(len(v)) },
			})
			for k := range 200 {
				c.Set(k, make([]byte, 10+k%90), 0)
				if st := c.Stats(); st.Bytes > 1000 {
					t.Fatalf("after %d sets %d bytes held", k+1, st.Bytes)
				}
			}
			if c.Set(-1, make([]byte, 1001), 0) {
				t.Fatal("an entry bigger than the cache was stored")
			}
			if c.Set(-2, nil, 2000) {
				t.Fatal("an explicit cost bigger than the cache was accepted")
			}
			st := c.Stats()
			if st.Rejections < 2 || st.Evictions+st.Rejections < 100 || st.MaxBytes != 1000 {
				t.Fatalf("stats %+v", st)
			}
			checkInvariants(t, c)
		})
	}
}

func TestWeigherAndDefaultCost(t *testing.T) {
	c := mustNew(t, Config[string, string]{MaxEntries: 10})
	c.Set("a", "xyz", 0)
	c.Set("b", "xyz", 7)
	if st := c.Stats(); st.Bytes != 8 {
		t.Fatalf("bytes %d, want 1 (default) + 7", st.Bytes)
	}
	w := mustNew(t, Config[string, string]{MaxEntries: 10, Weigher: func(k, v string) int64 { return int64(len(k) + len(v)) }})
	w.Set("a", "xyz", 0)
	w.Set("b", "xyz", 100) // an explicit cost wins
	if st := w.Stats(); st.Bytes != 104 {
		t.Fatalf("bytes %d, want 4 + 100", st.Bytes)
	}
}

func TestTTL(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Config[string, int]{MaxEntries: 100, TTL: time.Minute, Now: clock.Now})
	c.Set("default", 1, 0)
	c.SetWithTTL("short", 2, 0, time.Second)
	c.SetWithTTL("forever", 3, 0, 0)
	clock.Advance(999 * time.Millisecond)
	if _, ok := c.Get("short"); !ok {
		t.Fatal("expired early")
	}
	clock.Advance(time.Millisecond)
	if _, ok := c.Get("short"); ok {
		t.Fatal("read after its TTL")
	}
	if c.Len() != 2 {
		t.Fatalf("Len %d: the expired entry was not removed on read", c.Len())
	}
	// Re-setting without a TTL clears the expiry.
	c.SetWithTTL("default", 4, 0, 0)
	clock.Advance(time.Hour)
	if v, ok := c.Get("default"); !ok || v != 4 {
		t.Fatal("an entry re-set without TTL expired")
	}
	if _, ok := c.Get("forever"); !ok {
		t.Fatal("an entry without TTL expired")
	}
	st := c.Stats()
	if st.Expirations != 1 || st.Misses != 1 || st.Hits != 3 {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, c)
}

func TestSweepIsBounded(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Config[int, int]{MaxEntries: 1000, Shards: 1, SweepLimit: 10, Now: clock.Now})
	for k := range 25 {
		c.SetWithTTL(k, k, 0, time.Duration(k+1)*time.Second)
	}
	c.Set(100, 100, 0)
	clock.Advance(30 * time.Second)
	for _, want := range []int{10, 10, 5, 0} {
		if got := c.Sweep(); got != want {
			t.Fatalf("Sweep removed %d, want %d", got, want)
		}
		checkInvariants(t, c)
	}
	if c.Len() != 1 || c.Stats().Expirations != 25 {
		t.Fatalf("Len %d, stats %+v", c.Len(), c.Stats())
	}
	// The heap survives deletes and updates of entries with a TTL.
	for k := range 50 {
		c.SetWithTTL(k, k, 0, time.Duration(50-k)*time.Second)
	}
	for k := 0; k < 50; k += 3 {
		c.Delete(k)
	}
	for k := 1; k < 50; k += 3 {
		c.SetWithTTL(k, k, 0, time.Hour)
	}
	checkInvariants(t, c)
	clock.Advance(time.Minute)
	for c.Sweep() > 0 {
	}
	if c.Len() != 1+17 {
		t.Fatalf("Len %d after sweeping, want the 17 hour-long entries and key 100", c.Len())
	}
	checkInvariants(t, c)
}

func TestStartStopSweeps(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Config[int, int]{MaxEntries: 100, SweepInterval: time.Millisecond, Now: clock.Now})
	c.SetWithTTL(1, 1, 0, time.Second)
	clock.Advance(time.Hour)
	ctx := t.Context()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not remove the expired entry")
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// Stopped: a new expired entry stays until read.
	c.SetWithTTL(2, 2, 0, time.Second)
	clock.Advance(time.Hour)
	time.Sleep(5 * time.Millisecond)
	if c.Len() != 1 {
		t.Fatal("swept after Stop")
	}
	// A context that ends stops the sweeper too.
	cctx, cancel := context.WithCancel(ctx)
	if err := c.Start(cctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStatsCountEveryOperation(t *testing.T) {
	c := mustNew(t, Config[int, int]{MaxEntries: 2, Policy: PolicyLRU})
	c.Get(1)       // miss
	c.Set(1, 1, 0) // set
	c.Get(1)       // hit
	c.Set(2, 2, 0) // set
	c.Set(3, 3, 0) // set, evicts 1
	c.Get(1)       // miss
	c.Delete(2)    // delete
	c.Delete(2)    // nothing
	want := Stats{Hits: 1, Misses: 2, Sets: 3, Deletes: 1, Evictions: 1, Entries: 1, Bytes: 1, MaxEntries: 2}
	if st := c.Stats(); st != want {
		t.Fatalf("stats %+v\nwant  %+v", st, want)
	}
	if r := c.Stats().HitRatio(); r != 1.0/3 {
		t.Fatalf("hit ratio %v", r)
	}
	if (Stats{}).HitRatio() != 0 {
		t.Fatal("hit ratio of nothing")
	}
}

// TestReadBufferKeepsThePolicyExact checks that, without concurrency and
// with one read buffer (as with GOMAXPROCS 1) or several, buffered hits
// reach the policy in order and before any other call: through the Cache,
// an LRU evicts exactly as the bare policy does.
func TestReadBufferKeepsThePolicyExact(t *testing.T) {
	for _, stripes := range []int{1, 4, 16} {
		t.Run(fmt.Sprint(stripes), func(t *testing.T) { testReadBufferExact(t, stripes) })
	}
}

// testReadBufferExact is TestReadBufferKeepsThePolicyExact with the given
// number of read buffers per shard.
func testReadBufferExact(t *testing.T, stripes int) {
	c := mustNew(t, Config[int, int]{MaxEntries: 64, Policy: PolicyLRU, Shards: 1})
	s := &c.shards[0]
	s.reads = make([]readBuffer[int], stripes)
	for j := range s.reads {
		s.reads[j].bit = 1 << j
	}
	p := NewLRU[int](Limits{MaxEntries: 64})
	nodes := map[int]*Node[int]{}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50_000 {
		k := int(r.ExpFloat64() * 40)
		_, hit := c.Get(k)
		n, want := nodes[k]
		if hit != want {
			t.Fatalf("request %d key %d: cache hit %v, bare LRU hit %v", i, k, hit, want)
		}
		if want {
			p.Hit(n)
			continue
		}
		c.Set(k, k, 0)
		n = &Node[int]{Key: k, Cost: 1}
		nodes[k] = n
		for _, e := range p.Add(n, nil) {
			delete(nodes, e.Key)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	for _, policy := range PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			clock := newFakeClock()
			c := mustNew(t, Config[int, int]{MaxEntries: 512, MaxBytes: 4096, Shards: 4, Policy: policy, Now: clock.Now})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 9))
					for range 20_000 {
						k := int(r.ExpFloat64() * 300)
						switch op := r.IntN(100); {
						case op < 70:
							if v, ok := c.Get(k); ok && v != k {
								t.Errorf("Get(%d) = %d", k, v)
								return
							}
						case op < 85:
							c.Set(k, k, 1+r.Int64N(16))
						case op < 92:
							c.SetWithTTL(k, k, 0, time.Duration(1+r.IntN(5))*time.Second)
						case op < 97:
							c.Delete(k)
						case op < 98:
							clock.Advance(time.Second)
						case op < 99:
							c.Sweep()
						default:
							c.Stats()
							c.Len()
						}
					}
				})
			}
			wg.Wait()
			checkInvariants(t, c)
			st := c.Stats()
			if st.Entries > 512 || st.Bytes > 4096 || st.Entries != c.Len() {
				t.Fatalf("stats %+v, Len %d", st, c.Len())
			}
			if st.Hits+st.Misses == 0 || st.Sets == 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func ExampleCache() {
	c, err := New(Config[string, []byte]{
		MaxBytes: 64 << 20, // 64 MiB of values
		TTL:      5 * time.Minute,
	})
	if err != nil {
		panic(err)
	}
	c.Set("video:42", []byte(`{"title":"hello"}`), 0) // cost 0: Weigher, or 1
	c.Set("video:43", []byte(`{"title":"world"}`), 17)
	if v, ok := c.Get("video:43"); ok {
		fmt.Println(string(v))
	}
	// Output: {"title":"world"}
}

// TestAsyncReads runs the concurrent workload with AsyncReads and the
// maintenance goroutine, then checks the invariants and that the
// goroutine gave hits to the policy.
func TestAsyncReads(t *testing.T) {
	c := mustNew(t, Config[int, int]{MaxEntries: 256, Shards: 2, Policy: PolicyLRU, AsyncReads: true})
	ctx := t.Context()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.maintained.Load() {
		t.Fatal("Start with AsyncReads did not hand reads to the goroutine")
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 5))
			for range 20_000 {
				k := int(r.ExpFloat64() * 150)
				if v, ok := c.Get(k); ok && v != k {
					t.Errorf("Get(%d) = %d", k, v)
					return
				}
				if r.IntN(10) == 0 {
					c.Set(k, k, 0)
				}
				if r.IntN(100) == 0 {
					c.Delete(k)
				}
			}
		})
	}
	wg.Wait()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c.maintained.Load() {
		t.Fatal("reads still handed off after Stop")
	}
	checkInvariants(t, c)
	if st := c.Stats(); st.Hits == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestStartWithoutAsyncReadsStaysExact checks that the sweeper alone does
// not change how hits reach the policy.
func TestStartWithoutAsyncReadsStaysExact(t *testing.T) {
	c := mustNew(t, Config[int, int]{MaxEntries: 64, Shards: 1})
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(t.Context())
	if c.maintained.Load() {
		t.Fatal("Start without AsyncReads handed reads off")
	}
}

// entryFor returns the published entry of key, or nil.
func entryFor[K comparable, V any](c *Cache[K, V], key K) *entry[K, V] {
	h := c.hasher.hash(key)
	return c.shardOf(h).table.Load().get(key, h)
}

// testUpdateInPlace checks, for one kind of value, which updates keep the
// entry (in place) and which publish a new one, and that both are seen by
// Get and counted by Stats.
func testUpdateInPlace[V comparable](t *testing.T, wantKind valueKind, v1, v2, v3 V) {
	t.Helper()
	clock := newFakeClock()
	c := mustNew(t, Config[string, V]{MaxEntries: 100, Now: clock.Now})
	if c.kind != wantKind {
		t.Fatalf("value kind %d, want %d", c.kind, wantKind)
	}
	c.Set("k", v1, 0)
	e := entryFor(c, "k")
	if !c.Set("k", v2, 0) {
		t.Fatal("update in place not stored")
	}
	if got, ok := c.Get("k"); !ok || got != v2 {
		t.Fatalf("Get after update = %v, %v; want %v", got, ok, v2)
	}
	if entryFor(c, "k") != e {
		t.Fatal("an update of the same cost replaced the entry")
	}
	// A new cost needs the policy: a new entry.
	c.Set("k", v3, 5)
	if got, _ := c.Get("k"); got != v3 || entryFor(c, "k") == e {
		t.Fatalf("cost change: Get = %v, entry kept %v", got, entryFor(c, "k") == e)
	}
	if st := c.Stats(); st.Sets != 3 || st.Hits != 2 || st.Misses != 0 || st.Bytes != 5 {
		t.Fatalf("stats %+v", st)
	}
	// TTLs: a later expiry is in place, an earlier one or none is not.
	c.SetWithTTL("t", v1, 0, time.Minute)
	e = entryFor(c, "t")
	c.SetWithTTL("t", v2, 0, time.Hour)
	if entryFor(c, "t") != e {
		t.Fatal("a later expiry replaced the entry")
	}
	checkInvariants(t, c)
	c.SetWithTTL("t", v3, 0, time.Second)
	if entryFor(c, "t") == e {
		t.Fatal("an earlier expiry was applied in place")
	}
	e = entryFor(c, "t")
	c.SetWithTTL("t", v1, 0, 2*time.Second)
	if entryFor(c, "t") != e {
		t.Fatal("a later expiry replaced the entry")
	}
	c.SetWithTTL("t", v1, 0, 0)
	if entryFor(c, "t") == e {
		t.Fatal("clearing the expiry was applied in place")
	}
	checkInvariants(t, c)
}

func TestUpdateInPlace(t *testing.T) {
	one, two, three := 1, 2, 3
	t.Run("word", func(t *testing.T) { testUpdateInPlace(t, valueWord, 1, 2, 3) })
	t.Run("float", func(t *testing.T) { testUpdateInPlace(t, valueWord, 1.5, -2.0, 3e9) })
	t.Run("pointer", func(t *testing.T) { testUpdateInPlace(t, valuePointer, &one, &two, &three) })
	t.Run("boxed", func(t *testing.T) { testUpdateInPlace(t, valueBoxed, "one", "two", "three") })
	t.Run("int32", func(t *testing.T) { testUpdateInPlace[int32](t, valueBoxed, 1, 2, 3) })
}

// TestSweepMovesExtendedEntries checks that an entry whose expiry an
// update in place moved later is not swept at its old time, and is swept
// at its new one.
func TestSweepMovesExtendedEntries(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Config[int, int]{MaxEntries: 100, Shards: 1, Now: clock.Now})
	for k := range 10 {
		c.SetWithTTL(k, k, 0, time.Second)
	}
	for k := range 5 {
		c.SetWithTTL(k, -k, 0, time.Minute) // in place
	}
	clock.Advance(2 * time.Second)
	if n := c.Sweep(); n != 5 {
		t.Fatalf("Sweep removed %d, want the 5 entries not extended", n)
	}
	checkInvariants(t, c)
	for k := range 5 {
		if v, ok := c.Get(k); !ok || v != -k {
			t.Fatalf("extended key %d: %d, %v", k, v, ok)
		}
	}
	clock.Advance(time.Minute)
	if n := c.Sweep(); n != 5 || c.Len() != 0 {
		t.Fatalf("Sweep removed %d, Len %d", n, c.Len())
	}
	if st := c.Stats(); st.Expirations != 10 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConcurrentUpdatesInPlace has writers update a small key set in
// place and through the locked path (new costs, TTLs), with deletes,
// expiries and sweeps, while readers check that every value they get was
// written for its key; run with -race it also checks the atomics of the
// three kinds of value.
func TestConcurrentUpdatesInPlace(t *testing.T) {
	t.Run("word", func(t *testing.T) {
		testConcurrentUpdates(t, func(k, i int) int { return k<<20 | i }, func(v int) int { return v >> 20 })
	})
	t.Run("pointer", func(t *testing.T) {
		testConcurrentUpdates(t, func(k, i int) *[2]int { return &[2]int{k, i} }, func(v *[2]int) int { return v[0] })
	})
	t.Run("boxed", func(t *testing.T) {
		testConcurrentUpdates(t, func(k, i int) string { return fmt.Sprint(k, "/", i) }, func(v string) int {
			var k, i int
			fmt.Sscanf(v, "%d/%d", &k, &i)
			return k
		})
	})
}

func testConcurrentUpdates[V any](t *testing.T, val func(k, i int) V, keyOf func(V) int) {
	clock := newFakeClock()
	c := mustNew(t, Config[int, V]{MaxEntries: 64, Shards: 2, Now: clock.Now})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 11))
			for i := range 20_000 {
				k := r.IntN(80)
				switch op := r.IntN(100); {
				case op < 50:
					if v, ok := c.Get(k); ok && keyOf(v) != k {
						t.Errorf("Get(%d) returned a value of key %d", k, keyOf(v))
						return
					}
				case op < 85:
					c.Set(k, val(k, i), 1)
				case op < 90:
					c.Set(k, val(k, i), 2)
				case op < 96:
					c.SetWithTTL(k, val(k, i), 1, time.Duration(1+r.IntN(3))*time.Second)
				case op < 98:
					c.Delete(k)
				case op < 99:
					clock.Advance(time.Second)
				default:
					c.Sweep()
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, c)
	st := c.Stats()
	if st.Entries > 64 || st.Entries != c.Len() || st.Sets == 0 || st.Hits == 0 {
		t.Fatalf("stats %+v, Len %d", st, c.Len())
	}
}

// TestRemovalMarks checks the marks that order updates in place against
// removals: a reader that finds a marked entry still in the table (the
// moment between a writer's mark and its unpublishing) misses, an update
// in place of it takes the locked path, and an update whose value is
// stored before the mark stands unless the mark is an expiry.
func TestRemovalMarks(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Config[string, int]{MaxEntries: 10, Now: clock.Now})
	c.Set("k", 1, 0)
	e := entryFor(c, "k")
	s := c.shardOf(e.Hash)
	s.mu.Lock()
	e.markRemoved()
	s.mu.Unlock()
	if v, ok := c.Get("k"); ok {
		t.Fatalf("Get of a removed entry = %d", v)
	}
	if !c.Set("k", 2, 0) || entryFor(c, "k") == e {
		t.Fatal("an update of a removed entry was applied to it")
	}
	if v, ok := c.Get("k"); !ok || v != 2 {
		t.Fatalf("Get after re-set = %d, %v", v, ok)
	}
	checkInvariants(t, c)

	n := newEntry(valueWord, "x", 1, 5, 1, 0)
	n.store(valueWord, 6)
	n.markRemoved()
	if !n.commitInPlace(0) || n.load(valueWord) != 6 {
		t.Fatal("an update in place ordered before a removal did not stand")
	}
	now := clock.Now().UnixNano()
	x := newEntry(valueWord, "x", 1, 5, 1, now+10)
	if x.markExpired(now) {
		t.Fatal("marked expired before its time")
	}
	if !x.commitInPlace(now+20) || x.expire.Load() != now+20 {
		t.Fatal("the expiry did not move later")
	}
	if !x.commitInPlace(now+15) || x.expire.Load() != now+20 {
		t.Fatal("the expiry moved earlier")
	}
	if !x.markExpired(now+30) || x.commitInPlace(now+40) {
		t.Fatal("an update in place of an expired entry stood")
	}
	if dead(now) || !dead(x.expire.Load()) {
		t.Fatal("dead() is wrong")
	}
}
