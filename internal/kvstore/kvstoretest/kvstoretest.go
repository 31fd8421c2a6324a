// Package kvstoretest is the conformance suite every kvstore.Store driver
// passes.
package kvstoretest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/kvstore"
)

// Run runs the suite; open returns a fresh, empty store (namespaced keys
// are fine: the suite uses a random prefix per run).
func Run(t *testing.T, open func(t *testing.T) kvstore.Store) {
	ctx := context.Background()
	prefix := fmt.Sprintf("t%d:", time.Now().UnixNano())

	t.Run("ValuesAndTTL", func(t *testing.T) {
		s := open(t)
		k := prefix + "session:1"
		if _, err := s.Get(ctx, k); !errors.Is(err, kvstore.ErrNotFound) {
			t.Fatalf("get of a missing key: %v, want ErrNotFound", err)
		}
		if err := s.Set(ctx, k, []byte("alice"), 0); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, k); err != nil || string(v) != "alice" {
			t.Fatalf("get: %q %v", v, err)
		}
		if err := s.Set(ctx, k, []byte("bob"), 0); err != nil {
			t.Fatal(err)
		}
		if v, _ := s.Get(ctx, k); string(v) != "bob" {
			t.Fatalf("overwrite: %q", v)
		}
		if err := s.Set(ctx, prefix+"short", []byte("x"), 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := s.Get(ctx, prefix+"short")
			if errors.Is(err, kvstore.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a value with a 300ms TTL still there after 5s (%v)", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, kvstore.ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		if err := s.Set(ctx, "", []byte("x"), 0); err == nil {
			t.Error("empty key accepted")
		}
		if err := s.Set(ctx, strings.Repeat("k", kvstore.MaxKeyLen+1), []byte("x"), 0); err == nil {
			t.Error("over-long key accepted")
		}
		if err := s.Set(ctx, prefix+"big", make([]byte, kvstore.MaxValueLen+1), 0); err == nil {
			t.Error("over-long value accepted")
		}
	})

	t.Run("ConcurrentCounters", func(t *testing.T) {
		s := open(t)
		k := prefix + "views:42"
		if n, err := s.Counter(ctx, k); err != nil || n != 0 {
			t.Fatalf("new counter: %d %v", n, err)
		}
		var wg sync.WaitGroup
		seen := make([][]int64, 8)
		for g := range 8 {
			wg.Go(func() {
				for range 250 {
					n, err := s.Incr(ctx, k, 1)
					if err != nil {
						t.Error(err)
						return
					}
					seen[g] = append(seen[g], n)
				}
			})
		}
		wg.Wait()
		if n, err := s.Counter(ctx, k); err != nil || n != 2000 {
			t.Fatalf("counter after 8×250 increments: %d %v", n, err)
		}
		for g, ns := range seen {
			for i := 1; i < len(ns); i++ {
				if ns[i] <= ns[i-1] {
					t.Fatalf("goroutine %d saw the counter go from %d to %d", g, ns[i-1], ns[i])
				}
			}
		}
		if n, _ := s.Incr(ctx, k, -2000); n != 0 {
			t.Errorf("after -2000: %d", n)
		}
	})

	t.Run("CappedLists", func(t *testing.T) {
		s := open(t)
		l := prefix + "feed:7"
		for i := range 30 {
			if err := s.Push(ctx, l, []byte(fmt.Sprint("item", i)), 10); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Range(ctx, l, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 10 || string(got[0]) != "item29" || string(got[9]) != "item20" {
			t.Fatalf("list after 30 pushes capped at 10: %q", got)
		}
		if got, _ := s.Range(ctx, l, 3); len(got) != 3 || string(got[2]) != "item27" {
			t.Fatalf("range 3: %q", got)
		}
		if got, _ := s.Range(ctx, prefix+"nothing", 5); len(got) != 0 {
			t.Fatalf("range of a missing list: %q", got)
		}
		if err := s.Delete(ctx, l); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Range(ctx, l, 5); len(got) != 0 {
			t.Fatalf("range after delete: %q", got)
		}
	})
}
