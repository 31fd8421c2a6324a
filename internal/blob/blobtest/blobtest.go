// Package blobtest is the conformance suite every blob.Store driver passes.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/blueprint-media/blueprint/internal/blob"
)

// Run runs the suite against stores made by newStore (a fresh, empty store
// per call).
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	ctx := context.Background()
	t.Run("PutOpenStat", func(t *testing.T) {
		s := newStore(t)
		data := bytes.Repeat([]byte("blueprint"), 1000)
		info, err := s.Put(ctx, "videos/1/hls/v0/seg000.ts", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(data)) || info.ETag == "" {
			t.Fatalf("info = %+v", info)
		}
		o, err := s.Open(ctx, "videos/1/hls/v0/seg000.ts")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if _, err := o.Seek(9, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(o)
		if !bytes.Equal(got, data[9:]) {
			t.Fatal("content after seek differs")
		}
		if o.Info().ETag != info.ETag {
			t.Fatal("etag differs between Put and Open")
		}
	})
	t.Run("ReplaceChangesETag", func(t *testing.T) {
		s := newStore(t)
		a, _ := s.Put(ctx, "k", strings.NewReader("one"))
		b, _ := s.Put(ctx, "k", strings.NewReader("two"))
		if a.ETag == b.ETag {
			t.Fatal("etag unchanged after replace")
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Open(ctx, "missing/key"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("open missing: %v", err)
		}
		if _, err := s.Stat(ctx, "missing"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("stat missing: %v", err)
		}
		if err := s.Delete(ctx, "missing"); err != nil {
			t.Fatalf("delete missing: %v", err)
		}
	})
	t.Run("BadKeys", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []string{"", "/abs", "a/../b", "a//b", "a/./b", "sp ace", "new\nline", strings.Repeat("a", 513)} {
			if _, err := s.Put(ctx, k, strings.NewReader("x")); !errors.Is(err, blob.ErrBadKey) {
				t.Errorf("Put(%q) err = %v", k, err)
			}
		}
	})
	t.Run("ListAndDelete", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []string{"a/2", "a/1", "a/b/3", "b/1"} {
			if _, err := s.Put(ctx, k, strings.NewReader(k)); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, i := range list {
			keys = append(keys, i.Key)
		}
		if strings.Join(keys, ",") != "a/1,a/2,a/b/3" {
			t.Fatalf("list = %v", keys)
		}
		if err := s.Delete(ctx, "a/1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "a/1"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatal("deleted object still there")
		}
	})
	t.Run("ConcurrentPutsAreAtomic", func(t *testing.T) {
		s := newStore(t)
		a := bytes.Repeat([]byte{'a'}, 1<<20)
		b := bytes.Repeat([]byte{'b'}, 1<<20)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				data := a
				if i%2 == 1 {
					data = b
				}
				if _, err := s.Put(ctx, "same", bytes.NewReader(data)); err != nil {
					t.Error(err)
				}
			})
			wg.Go(func() {
				o, err := s.Open(ctx, "same")
				if err != nil {
					return // not written yet
				}
				defer o.Close()
				got, _ := io.ReadAll(o)
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					t.Error("reader saw a torn object")
				}
			})
		}
		wg.Wait()
	})
	t.Run("CanceledPutLeavesNothing", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Put(cctx, "c", strings.NewReader("data")); err == nil {
			t.Fatal("put with canceled context succeeded")
		}
		if _, err := s.Stat(ctx, "c"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatal("canceled put left an object")
		}
	})
}
