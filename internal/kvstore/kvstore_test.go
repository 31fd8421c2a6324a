package kvstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/kvstore"
	"github.com/blueprint-media/blueprint/internal/kvstore/kvstoretest"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

func TestPebble(t *testing.T) {
	kvstoretest.Run(t, func(t *testing.T) kvstore.Store {
		s, err := kvstore.OpenPebble(filepath.Join(t.TempDir(), "kv"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestPebbleSurvivesReopen: counters and lists are on disk.
func TestPebbleSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "kv")
	s, err := kvstore.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Incr(ctx, "c", 5)
	s.Push(ctx, "l", []byte("a"), 0)
	s.Set(ctx, "v", []byte("x"), 0)
	s.Close()
	s, err = kvstore.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, _ := s.Counter(ctx, "c")
	l, _ := s.Range(ctx, "l", 5)
	v, _ := s.Get(ctx, "v")
	if n != 5 || len(l) != 1 || string(v) != "x" {
		t.Fatalf("after reopen: counter %d, list %q, value %q", n, l, v)
	}
}

func TestRedisServer(t *testing.T) {
	r := testenv.StartRedis(t)
	kvstoretest.Run(t, func(t *testing.T) kvstore.Store {
		s, err := kvstore.OpenRedis(context.Background(), []string{r.Addr}, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestRedisCluster(t *testing.T) {
	addrs := testenv.StartRedisCluster(t, 3)
	kvstoretest.Run(t, func(t *testing.T) kvstore.Store {
		s, err := kvstore.OpenRedis(context.Background(), addrs, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
