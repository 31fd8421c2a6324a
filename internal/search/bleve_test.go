package search_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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

// TestBleveTwoEditsOnlyWhenOneFindsNothing: a word of 8+ characters is
// matched with two edits only when no document matches it (and the rest of
// the query) with at most one.
func TestBleveTwoEditsOnlyWhenOneFindsNothing(t *testing.T) {
	ctx := context.Background()
	b, err := search.OpenBleve(search.BleveConfig{Path: filepath.Join(t.TempDir(), "search")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	docs := []search.Doc{
		{Type: search.Video, ID: 1, Title: "Paintins of the coast"}, // 1 edit from "paintings"
		{Type: search.Video, ID: 2, Title: "Pointins of the hills"}, // 2 edits
	}
	if err := b.Upsert(ctx, docs...); err != nil {
		t.Fatal(err)
	}
	ids := func(text string) []int64 {
		t.Helper()
		res, err := b.Search(ctx, search.Query{Text: text})
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, h := range res.Hits {
			out = append(out, h.ID)
		}
		slices.Sort(out)
		return out
	}
	if got := ids("paintings "); !slices.Equal(got, []int64{1}) {
		t.Errorf("paintings: %v, want [1] (the one-edit match only)", got)
	}
	if got := ids("paintings hills "); !slices.Equal(got, []int64{2}) {
		t.Errorf("paintings hills: %v, want [2] (two edits when one finds nothing)", got)
	}
	if err := b.Delete(ctx, search.Video, 1); err != nil {
		t.Fatal(err)
	}
	if got := ids("paintings "); !slices.Equal(got, []int64{2}) {
		t.Errorf("paintings after the one-edit match is gone: %v, want [2]", got)
	}
}
