package edge

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestLRU(t *testing.T) {
	l := newLRU()
	if _, ok := l.victim(); ok {
		t.Fatal("empty LRU has a victim")
	}
	for _, k := range []string{"a", "b", "c"} {
		l.add(k, 1)
	}
	l.touch("a")
	l.touch("missing")
	want := []string{"b", "c", "a"}
	for _, w := range want {
		v, ok := l.victim()
		if !ok || v != w {
			t.Fatalf("victim = %q, %v; want %q", v, ok, w)
		}
		l.remove(v)
	}
	l.remove("missing")
}

// testObject writes a body file and returns its path and metadata.
func testObject(t *testing.T, dir, name string, size int) (string, *meta, []byte) {
	t.Helper()
	body := make([]byte, size)
	path := filepath.Join(dir, filePrefix+name+objSuffix)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m := newMeta(200, nil, now, now)
	m.size = int64(size)
	return path, m, body
}

func TestStoreTiers(t *testing.T) {
	dir := t.TempDir()
	s := newStore(2500, 3*blockSize, newMetrics())
	put := func(key string, size int, inMem bool) string {
		path, m, body := testObject(t, dir, key, size)
		if !inMem {
			body = nil
		}
		s.put(key, m, path, body)
		return path
	}
	pa := put("a", 1000, true)
	put("b", 1000, true)
	put("c", 1000, true) // memory: evicts a
	if mb, mo, db, do := s.usage(); mb != 2000 || mo != 2 || db != 3*blockSize || do != 3 {
		t.Fatalf("usage %d %d %d %d", mb, mo, db, do)
	}
	if e, ok := s.get("a"); !ok || e.inMem {
		t.Fatalf("a: %+v %v; want on disk only", e, ok)
	}
	// a was just used, so b is the disk victim.
	put("d", 10, false)
	if _, ok := s.get("b"); ok {
		t.Fatal("b survived disk eviction")
	}
	if _, err := os.Stat(filepath.Join(dir, filePrefix+"b"+objSuffix)); !os.IsNotExist(err) {
		t.Fatalf("b's file: %v", err)
	}
	s.promote("a", pa, make([]byte, 1000))
	if e, _ := s.get("a"); !e.inMem {
		t.Fatal("a not promoted")
	}
	s.promote("a", "other-path", make([]byte, 1000)) // no-op
	if mb, mo, _, _ := s.usage(); mb != 2000 || mo != 2 {
		t.Fatalf("memory after promotion %d %d", mb, mo)
	}

	// Replacing drops the old file; refresh and remove with a stale path do nothing.
	old, _ := s.get("c")
	_, m, _ := testObject(t, dir, "c-v2", 5)
	s.put("c", m, filepath.Join(dir, filePrefix+"c-v2"+objSuffix), nil)
	if _, err := os.Stat(old.path); !os.IsNotExist(err) {
		t.Fatalf("old version's file: %v", err)
	}
	if got := s.refresh("c", old, newMeta(200, nil, time.Now(), time.Now())); got.path != old.path {
		t.Fatal("refresh of an old version must return it")
	}
	if e, _ := s.get("c"); e.meta != m {
		t.Fatal("refresh of an old version changed the current one")
	}
	s.remove("c", old.path)
	if _, ok := s.get("c"); !ok {
		t.Fatal("remove with an old path removed the current version")
	}
	s.remove("c", "")
	if _, ok := s.get("c"); ok {
		t.Fatal("remove failed")
	}
}

func TestDiskCost(t *testing.T) {
	for size, want := range map[int64]int64{0: 4096, 1: 4096, 4096: 4096, 4097: 8192, 1 << 20: 1 << 20} {
		if got := diskCost(size); got != want {
			t.Errorf("diskCost(%d) = %d, want %d", size, got, want)
		}
	}
}

func TestStoreManyKeys(t *testing.T) {
	dir := t.TempDir()
	s := newStore(1<<20, 10*blockSize, newMetrics())
	for i := range 100 {
		k := strconv.Itoa(i)
		path, m, body := testObject(t, dir, k, 100)
		s.put(k, m, path, body)
	}
	if _, _, db, do := s.usage(); db != 10*blockSize || do != 10 {
		t.Fatalf("disk %d bytes %d objects", db, do)
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 10 {
		t.Fatalf("%d files, want 10", len(des))
	}
}
