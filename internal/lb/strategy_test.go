package lb

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	tbs := newBackends(t, 3)
	b, _ := newBalancer(t, Config{Strategy: RoundRobin}, tbs)
	front := newFront(t, b, nil)

	counts := map[string]int{}
	for range 300 {
		code, name, _ := get(t, front.URL, "/")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		counts[name]++
	}
	for _, tb := range tbs {
		if counts[tb.name] != 100 {
			t.Fatalf("counts = %v, want 100 each", counts)
		}
	}
}

func TestRoundRobinSkipsUnhealthy(t *testing.T) {
	tbs := newBackends(t, 3)
	tbs[1].failing.Store(true)
	b, _ := newBalancer(t, Config{Strategy: RoundRobin}, tbs)
	start(t, b)
	counts := map[string]int{}
	for range 100 {
		be, done, err := b.Pick("")
		if err != nil {
			t.Fatal(err)
		}
		done()
		counts[nameOf(tbs, be)]++
	}
	if counts["b0"] != 50 || counts["b2"] != 50 {
		t.Fatalf("counts = %v, want 50 for b0 and b2, none for b1", counts)
	}
}

func TestLeastConnPrefersIdle(t *testing.T) {
	tbs := newBackends(t, 3)
	b, _ := newBalancer(t, Config{Strategy: LeastConn}, tbs)
	front := newFront(t, b, nil)

	// Two slow requests occupy two backends, one each.
	var wg sync.WaitGroup
	busy := make(chan string, 2)
	for i := range 2 {
		wg.Go(func() {
			_, name, _ := get(t, front.URL, "/slow")
			busy <- name
		})
		waitFor(t, fmt.Sprintf("%d slow request(s) in flight", i+1), func() bool {
			n := 0
			for _, s := range b.Backends() {
				n += int(s.InFlight)
			}
			return n == i+1
		})
	}
	var idle *testBackend
	for _, tb := range tbs {
		if status(b, tb).InFlight == 0 {
			idle = tb
		}
	}
	if idle == nil {
		t.Fatalf("both slow requests went to one backend: %+v", b.Backends())
	}

	// Every quick request goes to the idle backend.
	for range 10 {
		if _, name, _ := get(t, front.URL, "/"); name != idle.name {
			t.Fatalf("quick request went to %s, want idle %s", name, idle.name)
		}
	}

	for _, tb := range tbs {
		tb.unblock()
	}
	wg.Wait()
	close(busy)
	for name := range busy {
		if name == idle.name {
			t.Fatalf("a slow request was served by the idle backend %s", name)
		}
	}
}

func TestLeastConnBreaksTiesRoundRobin(t *testing.T) {
	tbs := newBackends(t, 3)
	b, _ := newBalancer(t, Config{Strategy: LeastConn}, tbs)
	counts := map[string]int{}
	for range 30 {
		be, done, err := b.Pick("")
		if err != nil {
			t.Fatal(err)
		}
		counts[nameOf(tbs, be)]++
		done() // always idle again: every pick is a three-way tie
	}
	for _, tb := range tbs {
		if counts[tb.name] != 10 {
			t.Fatalf("counts = %v, want 10 each", counts)
		}
	}
}

// pickAll maps each key to the name of the backend Pick chooses for it.
func pickAll(t *testing.T, b *Balancer, tbs []*testBackend, keys []string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		be, done, err := b.Pick(k)
		if err != nil {
			t.Fatalf("Pick(%q): %v", k, err)
		}
		done()
		out[k] = nameOf(tbs, be)
	}
	return out
}

func TestConsistentHash(t *testing.T) {
	const n = 4
	tbs := newBackends(t, n)
	b, _ := newBalancer(t, Config{
		Strategy:       ConsistentHash,
		HealthInterval: 20 * time.Millisecond,
		UnhealthyAfter: 1,
		HealthyAfter:   1,
	}, tbs)
	start(t, b)

	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = fmt.Sprint("user-", i)
	}
	before := pickAll(t, b, tbs, keys)

	// The same key always lands on the same backend.
	if again := pickAll(t, b, tbs, keys); fmt.Sprint(again) != fmt.Sprint(before) {
		t.Fatal("the same keys mapped differently on a second pass")
	}

	// 100 virtual nodes per backend give each backend a fair share.
	share := map[string]int{}
	for _, name := range before {
		share[name]++
	}
	for _, tb := range tbs {
		if got := float64(share[tb.name]) / float64(len(keys)); math.Abs(got-1.0/n) > 0.1 {
			t.Errorf("backend %s owns %.1f%% of keys, want about %.0f%%", tb.name, 100*got, 100.0/n)
		}
	}

	// Take b2 down: only its keys move, and they spread over the others.
	dead := tbs[2]
	dead.failing.Store(true)
	waitFor(t, "b2 is marked down", func() bool { return !healthy(b, dead) })
	after := pickAll(t, b, tbs, keys)
	moved := 0
	landed := map[string]int{}
	for _, k := range keys {
		if after[k] == before[k] {
			if before[k] == dead.name {
				t.Fatalf("key %q still maps to the dead backend", k)
			}
			continue
		}
		moved++
		if before[k] != dead.name {
			t.Fatalf("key %q moved from healthy %s to %s", k, before[k], after[k])
		}
		landed[after[k]]++
	}
	if moved != share[dead.name] {
		t.Fatalf("%d keys moved, want exactly the dead backend's %d", moved, share[dead.name])
	}
	if frac := float64(moved) / float64(len(keys)); frac < 0.15 || frac > 0.35 {
		t.Errorf("%.1f%% of keys moved, want about %.0f%%", 100*frac, 100.0/n)
	}
	if len(landed) != n-1 {
		t.Errorf("the dead backend's keys went to %v, want all %d survivors", landed, n-1)
	}

	// When it comes back, its keys return and nothing else changes.
	dead.failing.Store(false)
	waitFor(t, "b2 is back up", func() bool { return healthy(b, dead) })
	if back := pickAll(t, b, tbs, keys); fmt.Sprint(back) != fmt.Sprint(before) {
		t.Fatal("mapping after recovery differs from the original")
	}
}

func TestConsistentHashThroughProxy(t *testing.T) {
	tbs := newBackends(t, 3)
	b, _ := newBalancer(t, Config{Strategy: ConsistentHash}, tbs)
	front := newFront(t, b, func(r *http.Request) string { return r.URL.Query().Get("user") })
	for u := range 20 {
		path := fmt.Sprint("/?user=u", u)
		_, first, _ := get(t, front.URL, path)
		for range 3 {
			if _, name, _ := get(t, front.URL, path); name != first {
				t.Fatalf("user u%d went to %s, then %s", u, first, name)
			}
		}
	}
}

func TestConsistentHashEmptyKeySpreads(t *testing.T) {
	tbs := newBackends(t, 3)
	b, _ := newBalancer(t, Config{Strategy: ConsistentHash}, tbs)
	counts := map[string]int{}
	for range 30 {
		be, done, err := b.Pick("")
		if err != nil {
			t.Fatal(err)
		}
		done()
		counts[nameOf(tbs, be)]++
	}
	if len(counts) != 3 {
		t.Fatalf("empty keys went to %v, want all three backends", counts)
	}
}

func TestRingDoesNotDependOnOrder(t *testing.T) {
	tbs := newBackends(t, 3)
	b1, err := New(Config{Strategy: ConsistentHash}, urls(tbs), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reversed := []*testBackend{tbs[2], tbs[1], tbs[0]}
	b2, err := New(Config{Strategy: ConsistentHash}, urls(reversed), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		k := fmt.Sprint("k", i)
		be1, d1, _ := b1.Pick(k)
		be2, d2, _ := b2.Pick(k)
		d1()
		d2()
		if be1.name != be2.name {
			t.Fatalf("key %q: %s with one order, %s with the other", k, be1.name, be2.name)
		}
	}
}
