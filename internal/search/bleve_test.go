package search_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/search"
	"github.com/blueprint-media/blueprint/internal/search/searchtest"
)

func TestBleveConformance(t *testing.T) {
	searchtest.Run(t, func(t *testing.T) search.Index {
		b, err := search.OpenBleve(search.BleveConfig{Path: filepath.Join(t.TempDir(), "search")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// TestBleveReopen: documents survive a close and reopen; a directory that
// is not an index is moved aside and replaced by an empty one.
func TestBleveReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "search")
	b, err := search.OpenBleve(search.BleveConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Recreated {
		t.Error("a new index is not reported as recreated")
	}
	if err := b.Upsert(ctx, search.Doc{Type: search.Video, ID: 1, Title: "persistent"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = search.OpenBleve(search.BleveConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if b.Recreated {
		t.Error("reopening an index recreated it")
	}
	if n, _ := b.Count(ctx); n != 1 {
		t.Fatalf("after reopen: %d documents, want 1", n)
	}
	b.Close()

	// Corrupt the index: its metadata is garbage.
	if err := os.WriteFile(filepath.Join(dir, "index_meta.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err = search.OpenBleve(search.BleveConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.Recreated || b.MovedAside == "" {
		t.Fatalf("a corrupt index was not replaced: %+v", b)
	}
	if _, err := os.Stat(b.MovedAside); err != nil {
		t.Fatalf("the old index was not kept aside: %v", err)
	}
	if n, _ := b.Count(ctx); n != 0 {
		t.Fatalf("the replacement has %d documents", n)
	}
}

// TestBleveHeldByAnotherProcess: a second open of the same directory fails
// after the lock timeout instead of hanging or moving the index aside.
func TestBleveHeldByAnotherProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "search")
	b, err := search.OpenBleve(search.BleveConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b2, err := search.OpenBleve(search.BleveConfig{Path: dir, LockTimeout: 200_000_000})
	if err == nil {
		b2.Close()
		t.Fatal("a second open of a held index succeeded")
	}
	if _, serr := os.Stat(dir); serr != nil {
		t.Fatalf("the held index was moved: %v", serr)
	}
	t.Log(err)
}
