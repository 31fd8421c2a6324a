package cache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// harness drives a Policy[string] the way the simulator does, and checks
// the policy's bookkeeping after every call.
type harness struct {
	t        *testing.T
	p        Policy[string]
	limits   Limits
	resident map[string]*Node[string]
	evicted  []string // keys evicted by the last call, in order
	rejected []string // keys rejected by the last call
	light    bool     // check the bookkeeping only at the end (long runs)
}

func newHarness(t *testing.T, name string, l Limits) *harness {
	t.Helper()
	p, err := NewPolicy[string](name, l, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, p: p, limits: l, resident: map[string]*Node[string]{}}
}

// access is one request: a hit if key is resident, otherwise an Add of
// cost 1. It reports whether it was a hit.
func (h *harness) access(key string) bool {
	return h.accessCost(key, 1)
}

func (h *harness) accessCost(key string, cost int64) bool {
	h.t.Helper()
	if n, ok := h.resident[key]; ok {
		h.p.Hit(n)
		h.evicted, h.rejected = nil, nil
		h.check()
		return true
	}
	n := &Node[string]{Key: key, Hash: testHash(key), Cost: cost}
	h.resident[key] = n
	h.collect(h.p.Add(n, nil))
	return false
}

func (h *harness) update(key string, cost int64) {
	h.t.Helper()
	h.collect(h.p.Update(h.resident[key], cost, nil))
}

func (h *harness) remove(key string) {
	h.t.Helper()
	h.p.Remove(h.resident[key])
	delete(h.resident, key)
	h.check()
}

func (h *harness) collect(out []*Node[string]) {
	h.t.Helper()
	h.evicted, h.rejected = nil, nil
	for _, n := range out {
		if _, ok := h.resident[n.Key]; !ok {
			h.t.Fatalf("%s evicted %q, which is not resident", h.p.Name(), n.Key)
		}
		delete(h.resident, n.Key)
		if n.Rejected() {
			h.rejected = append(h.rejected, n.Key)
		} else {
			h.evicted = append(h.evicted, n.Key)
		}
	}
	h.check()
}

// check verifies that the policy's counts match the resident set and that
// it is within its limits.
func (h *harness) check() {
	h.t.Helper()
	if !h.light {
		h.checkNow()
	}
}

func (h *harness) checkNow() {
	h.t.Helper()
	var cost int64
	for _, n := range h.resident {
		cost += n.Cost
	}
	if h.p.Len() != len(h.resident) || h.p.Cost() != cost {
		h.t.Fatalf("%s: Len %d Cost %d, want %d and %d", h.p.Name(), h.p.Len(), h.p.Cost(), len(h.resident), cost)
	}
	if h.limits.over(h.p.Len(), h.p.Cost()) {
		h.t.Fatalf("%s: %d entries of cost %d exceed %+v", h.p.Name(), h.p.Len(), h.p.Cost(), h.limits)
	}
}

func (h *harness) has(keys ...string) bool {
	for _, k := range keys {
		if _, ok := h.resident[k]; !ok {
			return false
		}
	}
	return true
}

func testHash(s string) uint64 {
	// FNV-1a, then a finalizer: deterministic, well mixed.
	h := uint64(14695981039346656037)
	for i := range len(s) {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	return h ^ h>>33
}

func TestLRUEvictionOrder(t *testing.T) {
	h := newHarness(t, PolicyLRU, Limits{MaxEntries: 3})
	for _, k := range []string{"a", "b", "c"} {
		h.access(k)
	}
	h.access("a") // order now b, c, a
	h.access("d")
	if !slices.Equal(h.evicted, []string{"b"}) {
		t.Fatalf("evicted %v, want [b]", h.evicted)
	}
	h.access("e")
	if !slices.Equal(h.evicted, []string{"c"}) {
		t.Fatalf("evicted %v, want [c]", h.evicted)
	}
	if !h.has("a", "d", "e") {
		t.Fatalf("resident %v", h.resident)
	}
}

func TestLFUEvictionOrder(t *testing.T) {
	h := newHarness(t, PolicyLFU, Limits{MaxEntries: 3})
	for _, k := range []string{"a", "b", "c", "a", "a", "b"} {
		h.access(k)
	}
	// counts: a 3, b 2, c 1
	h.access("d")
	if !slices.Equal(h.evicted, []string{"c"}) {
		t.Fatalf("evicted %v, want [c] (least frequent)", h.evicted)
	}
	h.access("d") // d 2, tie with b; b is older in the bucket
	h.access("e")
	if !slices.Equal(h.evicted, []string{"b"}) {
		t.Fatalf("evicted %v, want [b] (least recent of the least frequent)", h.evicted)
	}
	h.access("f")
	if !slices.Equal(h.evicted, []string{"e"}) {
		t.Fatalf("evicted %v, want [e]", h.evicted)
	}
	if !h.has("a", "d", "f") {
		t.Fatalf("resident %v", h.resident)
	}
}

func TestLFUBucketsStayOrdered(t *testing.T) {
	p := NewLFU[int](Limits{MaxEntries: 100})
	r := rand.New(rand.NewPCG(1, 2))
	nodes := map[int]*Node[int]{}
	for range 10_000 {
		k := int(r.Uint64N(150))
		if n, ok := nodes[k]; ok {
			p.Hit(n)
			continue
		}
		n := &Node[int]{Key: k, Cost: 1}
		nodes[k] = n
		for _, e := range p.Add(n, nil) {
			delete(nodes, e.Key)
		}
	}
	prev, total := uint64(0), 0
	for b := p.head.next; b != &p.head; b = b.next {
		if b.count <= prev || b.items.len == 0 {
			t.Fatalf("bucket count %d after %d, %d items", b.count, prev, b.items.len)
		}
		prev = b.count
		total += b.items.len
	}
	if total != p.Len() {
		t.Fatalf("buckets hold %d nodes, Len %d", total, p.Len())
	}
}

func TestTinyLFUKeepsFrequentKeysThroughAScan(t *testing.T) {
	// 50 hot keys requested round-robin, each followed by 3 keys of a scan
	// that never repeats: a hot key comes back every 200 requests, so an
	// LRU of 100 entries never hits, while W-TinyLFU keeps the hot keys.
	run := func(name string) (hotHits int, h *harness) {
		h = newHarness(t, name, Limits{MaxEntries: 100})
		h.light = true
		defer h.checkNow()
		for i := range 20_000 {
			if h.access(fmt.Sprint("hot", i%50)) && i >= 10_000 {
				hotHits++
			}
			for j := range 3 {
				h.access(fmt.Sprint("scan", i, ".", j))
			}
		}
		return hotHits, h
	}
	for _, name := range []string{PolicyTinyLFU, PolicyTinyLFUStatic} {
		if hits, h := run(name); hits < 9_000 {
			t.Errorf("%s: %d of the last 10000 hot requests hit, want ≥ 9000 (%d resident)", name, hits, len(h.resident))
		}
	}
	if hits, _ := run(PolicyLRU); hits != 0 {
		t.Errorf("lru: %d hot hits, want 0", hits)
	}
}

func TestTinyLFUAdmitsTheMoreFrequentCandidate(t *testing.T) {
	p := NewTinyLFU[string](Limits{MaxEntries: 100}, TinyLFUOptions{Seed: 1})
	h := &harness{t: t, p: p, limits: Limits{MaxEntries: 100}, resident: map[string]*Node[string]{}}
	for i := range 100 {
		h.access(fmt.Sprint("k", i))
	}
	// A newcomer seen once loses its duel with the victim: rejected.
	h.access("once")
	h.access("filler1")
	if len(h.rejected) == 0 {
		t.Fatalf("no rejection; evicted %v", h.evicted)
	}
	// A key requested often enough beforehand wins its duel.
	for range 5 {
		p.sketch.increment(testHash("popular"))
	}
	h.access("popular")
	h.access("filler2") // pushes "popular" out of the 1-entry window
	if !h.has("popular") {
		t.Fatalf("the frequent candidate was not admitted (rejected %v)", h.rejected)
	}
}

func TestTinyLFUClimberGrowsTheWindowOnRecency(t *testing.T) {
	// Each key is requested twice, 50 requests apart, as in the Corda
	// trace: only a window (or an LRU) of more than about 50 entries hits,
	// because a key seen once never wins its admission duel.
	run := func(adaptive bool) (float64, *TinyLFU[string]) {
		p := NewTinyLFU[string](Limits{MaxEntries: 500}, TinyLFUOptions{Adaptive: adaptive, Doorkeeper: true, Seed: 1})
		h := &harness{t: t, p: p, limits: Limits{MaxEntries: 500}, resident: map[string]*Node[string]{}, light: true}
		defer h.checkNow()
		hits := 0
		const n = 60_000
		for i := range n {
			k := i / 2 // even requests: first access of key i/2
			if i%2 == 1 {
				k = max(i/2-25, 0) // odd: second access, 50 requests later
			}
			if h.access(fmt.Sprint(k)) {
				hits++
			}
		}
		return float64(hits) / n, p
	}
	static, _ := run(false)
	adaptive, p := run(true)
	if p.WindowShare() < 0.1 {
		t.Errorf("window share %.3f, want it grown from 1 %% past 10 %%", p.WindowShare())
	}
	if adaptive < static+0.3 {
		t.Errorf("hit ratio %.3f adaptive vs %.3f static, want ≥ +0.3 (LRU: 0.5)", adaptive, static)
	}
}

func TestS3FIFOEvictsOneHitWondersAndRemembersGhosts(t *testing.T) {
	h := newHarness(t, PolicyS3FIFO, Limits{MaxEntries: 20})
	// Keys hit twice while in small move to main.
	for _, k := range []string{"a", "b", "a", "b", "a", "b"} {
		h.access(k)
	}
	for i := range 100 {
		h.access(fmt.Sprint("scan", i))
	}
	if !h.has("a", "b") {
		t.Fatalf("frequently hit keys left; resident %d", len(h.resident))
	}
	// A key evicted from small is remembered by ghost and goes to main
	// when it comes back.
	// Ghost holds the hashes of the last 18 keys evicted from small: the
	// most recent of them comes back into main.
	last := ""
	for i := 99; i >= 0 && last == ""; i-- {
		if k := fmt.Sprint("scan", i); !h.has(k) {
			last = k
		}
	}
	h.access(last)
	if n := h.resident[last]; n == nil || n.queue != qMain {
		t.Fatalf("ghost hit on %s did not insert into main", last)
	}
	h.access("scan1")
	if n := h.resident["scan1"]; n == nil || n.queue != qSmall {
		t.Fatalf("a key long forgotten by ghost did not go to small")
	}
}

func TestPoliciesRespectCostBounds(t *testing.T) {
	for _, name := range PolicyNames() {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, name, Limits{MaxCost: 100})
			for i := range 200 {
				h.accessCost(fmt.Sprint(i), int64(1+i%30))
			}
			if h.p.Cost() > 100 {
				t.Fatalf("cost %d > 100", h.p.Cost())
			}
			// Too big for the policy at all: rejected at once.
			h.accessCost("huge", 101)
			if !slices.Equal(h.rejected, []string{"huge"}) {
				t.Fatalf("rejected %v, want [huge]", h.rejected)
			}
			// Growing an entry evicts others; growing it past the bound
			// evicts the entry itself.
			h.accessCost("grow", 10)
			if h.has("grow") {
				h.update("grow", 90)
				if h.p.Cost() > 100 {
					t.Fatalf("cost %d > 100 after update", h.p.Cost())
				}
				if h.has("grow") {
					h.update("grow", 150)
					if h.has("grow") || !slices.Contains(h.rejected, "grow") {
						t.Fatalf("an entry over the bound stayed (rejected %v)", h.rejected)
					}
				}
			}
		})
	}
}

func TestPoliciesRespectBothBounds(t *testing.T) {
	for _, name := range PolicyNames() {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, name, Limits{MaxEntries: 10, MaxCost: 1000})
			for i := range 100 {
				h.accessCost(fmt.Sprint(i), 5) // entry-bound
			}
			if h.p.Len() != 10 {
				t.Fatalf("len %d, want 10", h.p.Len())
			}
			for i := range 100 {
				h.accessCost(fmt.Sprint("big", i), 300) // cost-bound
			}
			if h.p.Cost() > 1000 || h.p.Len() > 10 {
				t.Fatalf("len %d cost %d", h.p.Len(), h.p.Cost())
			}
		})
	}
}

// TestPoliciesRandomOperations runs random Adds, Hits, Updates and Removes
// with random costs against every policy; the harness checks the
// bookkeeping after each call.
func TestPoliciesRandomOperations(t *testing.T) {
	for _, name := range PolicyNames() {
		for _, l := range []Limits{{MaxEntries: 50}, {MaxCost: 400}, {MaxEntries: 40, MaxCost: 300}} {
			t.Run(fmt.Sprintf("%s/%+v", name, l), func(t *testing.T) {
				h := newHarness(t, name, l)
				r := rand.New(rand.NewPCG(7, uint64(l.MaxEntries)))
				for range 5_000 {
					k := fmt.Sprint(r.IntN(200))
					switch op := r.IntN(10); {
					case op < 7:
						h.accessCost(k, 1+r.Int64N(20))
					case op < 9:
						if h.has(k) {
							h.update(k, 1+r.Int64N(40))
						}
					default:
						if h.has(k) {
							h.remove(k)
						}
					}
				}
			})
		}
	}
}

func TestNewPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Limits
	}{
		{"nope", Limits{MaxEntries: 1}},
		{PolicyLRU, Limits{}},
		{PolicyLRU, Limits{MaxEntries: -1}},
		{PolicyLRU, Limits{MaxCost: -1}},
	} {
		if _, err := NewPolicy[int](tc.name, tc.l, 0); err == nil {
			t.Errorf("NewPolicy(%q, %+v) succeeded", tc.name, tc.l)
		}
	}
}
