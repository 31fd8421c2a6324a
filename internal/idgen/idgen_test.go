package idgen

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestNextIsUniqueAndOrdered(t *testing.T) {
	g := New()
	const n = 200_000
	var last int64
	for range n {
		id, err := g.Next(3) // order holds within one shard
		if err != nil {
			t.Fatal(err)
		}
		if id <= last {
			t.Fatalf("id %d after %d is not increasing", id, last)
		}
		last = id
	}
}

func TestConcurrentUnique(t *testing.T) {
	g := New()
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			local := make([]int64, 0, 20000)
			for range 20000 {
				id, err := g.Next(w)
				if err != nil {
					t.Error(err)
					return
				}
				local = append(local, id)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate %d", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
}

func TestDecodeRoundTrip(t *testing.T) {
	at := Epoch.Add(123456789 * time.Millisecond)
	g := &Generator{now: func() time.Time { return at }, sleep: func(time.Duration) {}}
	id, err := g.Next(4095)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(id)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Time.Equal(at) || p.Shard != 4095 || p.Sequence != 0 || Shard(id) != 4095 {
		t.Fatalf("decode = %+v", p)
	}
}

func TestClockBackwards(t *testing.T) {
	now := Epoch.Add(time.Hour)
	var slept time.Duration
	g := &Generator{now: func() time.Time { return now }, sleep: func(d time.Duration) { slept += d; now = now.Add(d) }}
	a, _ := g.Next(1)
	now = now.Add(-100 * time.Millisecond) // small step back: waited out
	b, err := g.Next(1)
	if err != nil || b <= a || slept < 100*time.Millisecond {
		t.Fatalf("small step back: a=%d b=%d err=%v slept=%v", a, b, err, slept)
	}
	now = now.Add(-2 * time.Second) // large step back: refused
	if _, err := g.Next(1); !errors.Is(err, ErrClockBackwards) {
		t.Fatalf("large step back: err=%v", err)
	}
}

func TestSequenceExhaustionWaits(t *testing.T) {
	now := Epoch.Add(time.Minute)
	g := &Generator{now: func() time.Time { return now }, sleep: func(d time.Duration) { now = now.Add(time.Millisecond) }}
	var last int64
	for range 3000 {
		id, err := g.Next(0)
		if err != nil || id <= last {
			t.Fatalf("id=%d last=%d err=%v", id, last, err)
		}
		last = id
	}
}

func TestBadShard(t *testing.T) {
	g := New()
	for _, s := range []int{-1, MaxShard + 1} {
		if _, err := g.Next(s); !errors.Is(err, ErrBadShard) {
			t.Errorf("shard %d: err=%v", s, err)
		}
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"", "0", "-5", "+5", "007", "abc", "99999999999999999999", "1e9"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if id, err := Parse("12345"); err != nil || id != 12345 {
		t.Errorf("Parse(12345) = %d, %v", id, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1", "123456789012345678", "0", "-1", "9223372036854775807", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if id <= 0 || strconv.FormatInt(id, 10) != s {
			t.Fatalf("Parse(%q) = %d, not canonical", s, id)
		}
		if _, err := Decode(id); err != nil {
			t.Fatal(err)
		}
	})
}
