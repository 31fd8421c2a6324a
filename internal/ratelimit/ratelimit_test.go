package ratelimit

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func mustNew(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return l
}

// keys returns how many keys l tracks right now.
func (l *Limiter) keys() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; empty means valid
	}{
		{"valid", Config{Rate: 1, Burst: 1}, ""},
		{"zero rate", Config{Rate: 0, Burst: 1}, "rate"},
		{"negative rate", Config{Rate: -1, Burst: 1}, "rate"},
		{"NaN rate", Config{Rate: math.NaN(), Burst: 1}, "rate"},
		{"infinite rate", Config{Rate: math.Inf(1), Burst: 1}, "rate"},
		{"zero burst", Config{Rate: 1, Burst: 0}, "burst"},
		{"negative max keys", Config{Rate: 1, Burst: 1, MaxKeys: -1}, "max keys"},
		{"negative ttl", Config{Rate: 1, Burst: 1, IdleTTL: -time.Second}, "idle ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: unexpected error %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("New: want error about %q, got nil", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("New: error %q does not mention %q", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "ratelimit: "):
				t.Fatalf("New: error %q lacks the package prefix", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	l := mustNew(t, Config{Rate: 1000, Burst: 1})
	total := 0
	for i := range l.shards {
		total += l.shards[i].capacity
	}
	if total != DefaultMaxKeys {
		t.Errorf("capacity = %d, want %d", total, DefaultMaxKeys)
	}
	if l.ttl != int64(DefaultIdleTTL) {
		t.Errorf("ttl = %v, want %v", time.Duration(l.ttl), DefaultIdleTTL)
	}
	// A slow bucket takes longer than the TTL to refill; the TTL is raised.
	l = mustNew(t, Config{Rate: 0.01, Burst: 10, IdleTTL: time.Minute})
	if want := int64(1000 * time.Second); l.ttl != want {
		t.Errorf("ttl = %v, want %v", time.Duration(l.ttl), time.Duration(want))
	}
}

func TestBurstThenRefusal(t *testing.T) {
	l := mustNew(t, Config{Rate: 2, Burst: 5})
	now := time.Now()
	for i := range 5 {
		if ok, ra := l.AllowN("alice", now, 1); !ok {
			t.Fatalf("request %d within burst refused (retryAfter %v)", i, ra)
		}
	}
	ok, ra := l.AllowN("alice", now, 1)
	if ok {
		t.Fatal("request beyond burst allowed")
	}
	// Empty bucket, 2 tokens/s: one token in exactly 500ms.
	if ra != 500*time.Millisecond {
		t.Fatalf("retryAfter = %v, want 500ms", ra)
	}
	// Refused requests take nothing: asking again gives the same answer.
	if ok, ra2 := l.AllowN("alice", now, 1); ok || ra2 != ra {
		t.Fatalf("second refusal = (%v, %v), want (false, %v)", ok, ra2, ra)
	}
	if ok, _ := l.AllowN("alice", now.Add(ra-time.Millisecond), 1); ok {
		t.Fatal("allowed before retryAfter elapsed")
	}
	if ok, ra := l.AllowN("alice", now.Add(ra), 1); !ok {
		t.Fatalf("refused after waiting retryAfter (retryAfter now %v)", ra)
	}
}

func TestRetryAfterIsEnough(t *testing.T) {
	// Whatever the rate, waiting exactly retryAfter must be enough, and
	// retryAfter must be positive. This guards the float rounding.
	for _, r := range []float64{0.3, 1, 3, 7.5, 33.3, 1000, 1e6, 1e9} {
		t.Run(fmt.Sprint(r), func(t *testing.T) {
			l := mustNew(t, Config{Rate: r, Burst: 3})
			now := time.Now()
			for range 3 {
				l.AllowN("k", now, 1)
			}
			for i := range 50 {
				ok, ra := l.AllowN("k", now, 1)
				if ok {
					continue // refilled by a rounded-up wait; take the next
				}
				if ra <= 0 {
					t.Fatalf("retryAfter = %v, want > 0", ra)
				}
				now = now.Add(ra)
				if ok, ra2 := l.AllowN("k", now, 1); !ok {
					t.Fatalf("step %d: refused after waiting %v (retryAfter now %v)", i, ra, ra2)
				}
			}
		})
	}
}

func TestRefill(t *testing.T) {
	l := mustNew(t, Config{Rate: 10, Burst: 10})
	now := time.Now()
	for range 10 {
		l.AllowN("bob", now, 1)
	}
	if ok, _ := l.AllowN("bob", now, 1); ok {
		t.Fatal("drained bucket allowed a request")
	}
	// 350ms at 10/s refills 3.5 tokens: 3 requests pass, the 4th waits 50ms.
	now = now.Add(350 * time.Millisecond)
	for i := range 3 {
		if ok, _ := l.AllowN("bob", now, 1); !ok {
			t.Fatalf("request %d after partial refill refused", i)
		}
	}
	if ok, ra := l.AllowN("bob", now, 1); ok || ra != 50*time.Millisecond {
		t.Fatalf("4th request = (%v, %v), want (false, 50ms)", ok, ra)
	}
	// A long pause refills only up to Burst.
	now = now.Add(time.Hour)
	if ok, _ := l.AllowN("bob", now, 10); !ok {
		t.Fatal("full bucket refused a burst-sized request")
	}
	if ok, _ := l.AllowN("bob", now, 1); ok {
		t.Fatal("bucket held more than Burst tokens")
	}
}

func TestTimeGoingBackwardsAddsNothing(t *testing.T) {
	l := mustNew(t, Config{Rate: 1, Burst: 1})
	now := time.Now()
	l.AllowN("k", now, 1)
	if ok, _ := l.AllowN("k", now.Add(-time.Hour), 1); ok {
		t.Fatal("earlier time refilled the bucket")
	}
	if ok, _ := l.AllowN("k", now.Add(time.Second), 1); !ok {
		t.Fatal("refill measured from the wrong time after a backwards step")
	}
}

func TestAllowNEdgeCases(t *testing.T) {
	l := mustNew(t, Config{Rate: 1, Burst: 3})
	now := time.Now()
	if ok, ra := l.AllowN("k", now, 0); !ok || ra != 0 {
		t.Errorf("n=0: (%v, %v), want (true, 0)", ok, ra)
	}
	if ok, ra := l.AllowN("k", now, 4); ok || ra != time.Duration(math.MaxInt64) {
		t.Errorf("n>burst: (%v, %v), want (false, max)", ok, ra)
	}
	if ok, _ := l.AllowN("k", now, 3); !ok {
		t.Error("n=burst on a full bucket refused")
	}
	// All or nothing: 2 requested, 1 available after 1s; nothing is taken.
	now = now.Add(time.Second)
	if ok, ra := l.AllowN("k", now, 2); ok || ra != time.Second {
		t.Errorf("n=2 with 1 token: (%v, %v), want (false, 1s)", ok, ra)
	}
	if ok, _ := l.AllowN("k", now, 1); !ok {
		t.Error("the refused AllowN took tokens")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l := mustNew(t, Config{Rate: 1, Burst: 2})
	now := time.Now()
	for range 2 {
		l.AllowN("a", now, 1)
	}
	if ok, _ := l.AllowN("a", now, 1); ok {
		t.Fatal("key a not limited")
	}
	for i := range 2 {
		if ok, _ := l.AllowN("b", now, 1); !ok {
			t.Fatalf("key b request %d refused because of key a", i)
		}
	}
}

func TestMaxKeysBound(t *testing.T) {
	for _, maxKeys := range []int{1, 5, 32, 100, 1000} {
		t.Run(fmt.Sprint(maxKeys), func(t *testing.T) {
			l := mustNew(t, Config{Rate: 1, Burst: 1, MaxKeys: maxKeys})
			now := time.Now()
			for i := range 20 * maxKeys {
				l.AllowN(fmt.Sprint("client-", i), now, 1)
				if n := l.keys(); n > maxKeys {
					t.Fatalf("after %d keys: tracking %d, bound %d", i+1, n, maxKeys)
				}
			}
		})
	}
}

func TestLeastRecentlyUsedIsDropped(t *testing.T) {
	// MaxKeys 1 gives a single shard holding one key.
	l := mustNew(t, Config{Rate: 1, Burst: 1, MaxKeys: 1})
	now := time.Now()
	l.AllowN("a", now, 1) // a drained
	l.AllowN("b", now, 1) // evicts a
	if n := l.keys(); n != 1 {
		t.Fatalf("tracking %d keys, want 1", n)
	}
	// a was forgotten, so it starts again with a full bucket.
	if ok, _ := l.AllowN("a", now, 1); !ok {
		t.Fatal("evicted key kept its empty bucket")
	}

	// Widen that single shard to 3 keys: touching a key protects it.
	l = mustNew(t, Config{Rate: 1, Burst: 1, MaxKeys: 1})
	s := &l.shards[0]
	s.capacity = 3
	for _, k := range []string{"x", "y", "z"} {
		l.AllowN(k, now, 1)
	}
	l.AllowN("x", now, 1) // x is now the most recently used; y the least
	l.AllowN("w", now, 1) // evicts y
	for _, k := range []string{"x", "z", "w"} {
		if _, ok := s.buckets[k]; !ok {
			t.Errorf("key %q evicted, want it kept", k)
		}
	}
	if _, ok := s.buckets["y"]; ok {
		t.Error("least recently used key y kept")
	}
}

func TestIdleKeysExpire(t *testing.T) {
	l := mustNew(t, Config{Rate: 100, Burst: 1, MaxKeys: 1, IdleTTL: time.Minute})
	s := &l.shards[0]
	s.capacity = 10
	now := time.Now()
	for i := range 5 {
		l.AllowN(fmt.Sprint("old-", i), now, 1)
	}
	l.AllowN("recent", now.Add(50*time.Second), 1)
	// A new key at 90s forgets the five keys idle for 90s, but not "recent",
	// idle for only 40s.
	l.AllowN("new", now.Add(90*time.Second), 1)
	if n := len(s.buckets); n != 2 {
		t.Fatalf("tracking %d keys after expiry, want 2 (recent, new)", n)
	}
	if _, ok := s.buckets["recent"]; !ok {
		t.Fatal("key idle for less than the TTL was forgotten")
	}
}

func TestConcurrentUse(t *testing.T) {
	const (
		goroutines = 8
		perG       = 2000
		burst      = 100
	)
	// 320 keys is 10 per shard. Each goroutine alternates "shared" with a
	// churn key, so at most 8 other keys are inserted between two uses of
	// "shared": it is never the least recently used key of its full shard.
	l := mustNew(t, Config{Rate: 1e-3, Burst: burst, MaxKeys: 320})
	var allowedShared atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				if ok, _ := l.Allow("shared"); ok {
					allowedShared.Add(1)
				}
				l.Allow(fmt.Sprint("g", g, "-", i%200)) // churns the LRU
			}
		})
	}
	wg.Wait()
	// "shared" is never evicted and the slow rate adds (almost) nothing:
	// exactly one burst is allowed.
	if got := allowedShared.Load(); got != burst {
		t.Fatalf("shared key allowed %d requests, want %d", got, burst)
	}
	if n := l.keys(); n > 320 {
		t.Fatalf("tracking %d keys, bound 320", n)
	}
}

// BenchmarkAllow compares this package with golang.org/x/time/rate used the
// common way: one rate.Limiter per key in a sync.Map. The sync.Map baseline
// never forgets a key, so it does less work than a bounded limiter; keep that
// in mind when reading the numbers.
func BenchmarkAllow(b *testing.B) {
	const (
		r     = 1e6
		burst = 1000
	)
	for _, nkeys := range []int{1, 10_000} {
		keys := make([]string, nkeys)
		for i := range keys {
			keys[i] = fmt.Sprint("client-", i)
		}

		b.Run(fmt.Sprintf("impl=blueprint/keys=%d", nkeys), func(b *testing.B) {
			l := mustNew(b, Config{Rate: r, Burst: burst})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					l.Allow(keys[i%nkeys])
					i++
				}
			})
		})

		b.Run(fmt.Sprintf("impl=x_time_rate_syncmap/keys=%d", nkeys), func(b *testing.B) {
			var m sync.Map
			allow := func(key string) bool {
				v, ok := m.Load(key)
				if !ok {
					v, _ = m.LoadOrStore(key, rate.NewLimiter(rate.Limit(r), burst))
				}
				return v.(*rate.Limiter).Allow()
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					allow(keys[i%nkeys])
					i++
				}
			})
		})
	}
}
