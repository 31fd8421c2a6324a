package cache

import "sync/atomic"

// table is an open-addressing hash table (linear probing) from keys to
// immutable entries, with lock-free lookups and writers serialized by the
// shard's mutex.
//
// Readers load the table pointer, then slots, with atomic loads only: they
// never write shared memory and never wait. A slot holds nil (never used,
// ends a probe), the table's tombstone (a deleted entry, probes go on) or an
// entry. Entries are never modified after they are published: an update
// stores a new entry in the same slot. When used slots (live plus
// tombstones) pass half of the capacity, the writer copies the live entries
// into a fresh table and publishes it; readers still on the old one see a
// consistent, slightly stale snapshot. The table is sized at four to eight
// times its live entries and rebuilt when half of it is used (at 3/4 the
// probes through tombstones made writes 15 % slower): probes are linear and
// the hashes sit beside the pointers, so a probe of a few slots reads one
// or two cache lines. A cache that inserts and evicts at a steady rate
// rebuilds a shard's table once per quarter-table of inserts, amortized
// O(1).
type table[K comparable, V any] struct {
	slots []slot[K, V]
	mask  uint64
	live  int // entries; writers only
	used  int // entries and tombstones; writers only
	tomb  *entry[K, V]
}

// slot is one place of a table: an entry pointer and, beside it on the same
// cache line, the full hash of its key, so that a probe passes other keys
// without dereferencing their entries. A writer filling a slot stores the
// hash before the pointer; a reader loads the pointer first, so a reader
// that sees a new entry sees its hash, and a reader that pairs an old entry
// with a new hash still compares the entry's key before using it.
type slot[K comparable, V any] struct {
	hash atomic.Uint64
	e    atomic.Pointer[entry[K, V]]
}

// entry is a published key-value pair. Its fields never change; node
// points to the key's policy node, which lives as long as the key is
// resident and is only touched under the shard's mutex. The node records
// the entry's slot (Node.slot), so that evicting it needs no probe.
type entry[K comparable, V any] struct {
	key    K
	hash   uint64
	value  V
	expire int64 // Unix nanoseconds; 0: never
	node   *Node[K]
}

// newTable returns an empty table with room for about n entries.
func newTable[K comparable, V any](n int) *table[K, V] {
	size := ceilPow2(uint64(max(n, 4)) * 4)
	return &table[K, V]{
		slots: make([]slot[K, V], size),
		mask:  size - 1,
		tomb:  new(entry[K, V]),
	}
}

// get returns the entry of key, or nil. It is safe to call concurrently
// with writers.
func (t *table[K, V]) get(key K, hash uint64) *entry[K, V] {
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		e := sl.e.Load()
		if e == nil {
			return nil
		}
		if sl.hash.Load() == hash && e != t.tomb && e.key == key {
			return e
		}
	}
}

// find returns the slot of key, or -1. Writers only.
func (t *table[K, V]) find(key K, hash uint64) int {
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		e := sl.e.Load()
		if e == nil {
			return -1
		}
		if sl.hash.Load() == hash && e != t.tomb && e.key == key {
			return int(i)
		}
	}
}

// put stores e, replacing the entry of the same key if there is one, and
// returns the table to use from now on (a new one if this one was too
// full). Writers only; the caller publishes the returned table.
func (t *table[K, V]) put(e *entry[K, V]) *table[K, V] {
	free := -1
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		cur := t.slots[i].e.Load()
		if cur == nil {
			if free < 0 {
				free = int(i)
				t.used++
			}
			break
		}
		if cur == t.tomb {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		if t.slots[i].hash.Load() == e.hash && cur.key == e.key {
			t.slots[i].e.Store(e)
			e.node.slot = int32(i)
			return t
		}
	}
	t.slots[free].hash.Store(e.hash)
	t.slots[free].e.Store(e)
	e.node.slot = int32(free)
	t.live++
	if t.used*2 > len(t.slots) {
		return t.rebuild()
	}
	return t
}

// remove deletes the entry of node n, which must be in t. Writers only.
func (t *table[K, V]) remove(n *Node[K]) {
	t.slots[n.slot].e.Store(t.tomb)
	t.live--
}

// rebuild returns a fresh table holding the live entries.
func (t *table[K, V]) rebuild() *table[K, V] {
	nt := newTable[K, V](t.live)
	for i := range t.slots {
		if e := t.slots[i].e.Load(); e != nil && e != t.tomb {
			j := e.hash & nt.mask
			for nt.slots[j].e.Load() != nil {
				j = (j + 1) & nt.mask
			}
			nt.slots[j].hash.Store(e.hash)
			nt.slots[j].e.Store(e)
			e.node.slot = int32(j)
			nt.live++
			nt.used++
		}
	}
	return nt
}

// all calls fn with every live entry. Writers only.
func (t *table[K, V]) all(fn func(*entry[K, V])) {
	for i := range t.slots {
		if e := t.slots[i].e.Load(); e != nil && e != t.tomb {
			fn(e)
		}
	}
}
