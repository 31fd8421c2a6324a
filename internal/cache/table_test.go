package cache

import (
	"math/rand/v2"
	"testing"
)

// TestTableClearsTrailingTombstones checks that deletes whose next slot is
// empty leave no tombstone behind, so that a table whose entries are all
// deleted is empty again, and that lookups stay right throughout.
func TestTableClearsTrailingTombstones(t *testing.T) {
	h := newHasher[int]()
	tab := newTable[int, int](1000)
	var entries []*entry[int, int]
	for k := range 1000 {
		e := &entry[int, int]{Node: Node[int]{Key: k, Hash: h.hash(k)}, value: k}
		found, free := tab.lookup(k, e.Hash)
		if found >= 0 {
			t.Fatalf("key %d found before it was inserted", k)
		}
		if nt := tab.insert(e, free); nt != tab {
			t.Fatalf("a table sized for 1000 entries was rebuilt at %d", k)
		}
		entries = append(entries, e)
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
	for i, e := range entries {
		tab.remove(&e.Node)
		if got := tab.get(e.Key, e.Hash); got != nil {
			t.Fatalf("key %d found after its delete", e.Key)
		}
		for _, o := range entries[i+1:] {
			if got := tab.get(o.Key, o.Hash); got != o {
				t.Fatalf("after deleting %d, key %d is lost", e.Key, o.Key)
			}
		}
	}
	if tab.live != 0 || tab.used != 0 {
		t.Fatalf("empty table: %d live, %d used", tab.live, tab.used)
	}
	for i := range tab.slots {
		if tab.slots[i].e.Load() != nil {
			t.Fatalf("slot %d not empty", i)
		}
	}
}

// TestHasher checks that integer keys of every width take the mixer, that
// other keys do not, and that the mixer spreads consecutive keys and
// depends on the seed.
func TestHasher(t *testing.T) {
	type userID int32
	if !newHasher[int8]().isInt || !newHasher[uint64]().isInt || !newHasher[userID]().isInt || !newHasher[uintptr]().isInt {
		t.Fatal("integer keys do not take the integer path")
	}
	if newHasher[string]().isInt || newHasher[float64]().isInt || newHasher[[2]int]().isInt {
		t.Fatal("non-integer keys take the integer path")
	}
	a, b := newHasher[userID](), newHasher[userID]()
	seen := map[uint64]bool{}
	low := map[uint64]int{}
	same := 0
	for k := range userID(4096) {
		ha := a.hash(k)
		seen[ha] = true
		low[ha&63]++
		if ha == b.hash(k) {
			same++
		}
	}
	if len(seen) != 4096 {
		t.Fatalf("%d distinct hashes of 4096 keys", len(seen))
	}
	for bucket, n := range low {
		if n < 20 || n > 120 { // expected 64 per bucket
			t.Fatalf("low bits %d hold %d of 4096 consecutive keys", bucket, n)
		}
	}
	if same > 0 {
		t.Fatalf("two seeds agree on %d keys", same)
	}
	if a.hash(-1) == a.hash(1) {
		t.Fatal("negative key hashes like its absolute value")
	}
}
