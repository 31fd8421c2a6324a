package cache

import "sync/atomic"

// table is an open-addressing hash table (linear probing) from keys to
// immutable entries, with lock-free lookups and writers serialized by the
// shard's mutex.
//
// Readers load the table pointer, then slots, with atomic loads only: they
// never write shared memory and never wait. A slot holds nil (never used,
// ends a probe), the table's tombstone (a deleted entry, probes go on) or an
// entry. Entries are never modified after they are published, except for
// their policy node's fields, which readers do not read: an update stores a
// new entry in the same slot. A delete leaves a tombstone only where a probe
// could need to pass it: if the next slot is nil, the slot and the
// tombstones just before it become nil again, so that at a steady rate of
// inserts and evictions tombstones do not pile up. When used slots (live
// plus tombstones) pass tableMaxLoad of the capacity, the writer copies the
// live entries into a fresh table of two to four slots per entry and
// publishes it; readers still on the old one see a consistent, slightly
// stale snapshot.
//
// Sizing: a slot is 16 bytes (the key's hash beside the entry pointer, so
// that a probe passes other keys without dereferencing their entries), four
// to a cache line; at a load of 1/4 to 5/8 a successful probe reads one
// line and a missing key one or two. The table used to be sized at four to
// eight slots per entry: twice the memory, and lookups of cold keys missed
// the CPU caches more often.
type table[K comparable, V any] struct {
	slots []slot[K, V]
	mask  uint64
	live  int // entries; writers only
	used  int // entries and tombstones; writers only
	tomb  *entry[K, V]
}

// Table load bounds: a table is rebuilt when used slots exceed
// tableMaxLoadNum/tableMaxLoadDen of it, into one of tableSlotsPerEntry
// slots per live entry rounded up to a power of two.
const (
	tableMaxLoadNum    = 5
	tableMaxLoadDen    = 8
	tableSlotsPerEntry = 2
)

// slot is one place of a table: an entry pointer and, beside it on the same
// cache line, the full hash of its key. A writer filling a slot stores the
// hash before the pointer; a reader loads the pointer first, so a reader
// that sees a new entry sees its hash, and a reader that pairs an old entry
// with a new hash still compares the entry's key before using it.
type slot[K comparable, V any] struct {
	hash atomic.Uint64
	e    atomic.Pointer[entry[K, V]]
}

// entry is a published key-value pair together with its policy node: one
// allocation per stored key. Key, Hash and Cost never change after the
// entry is published; the value and the expiry time change only through
// an update in place (Cache.setInPlace: atomic stores, the expiry only
// later). The embedded Node's other fields belong to the policy and are
// only touched under the shard's mutex (readers do not read them). An
// update that changes the cost or moves the expiry earlier publishes a new
// entry and moves the policy's links to its node (see Node.transplant).
// The node records the entry's slot (Node.slot), so that evicting it needs
// no probe.
type entry[K comparable, V any] struct {
	Node[K]
	// value is the value the entry was published with. For values that
	// fit one machine word (see valueKind) an update in place replaces it
	// atomically; other values never change, and the entry is allocated
	// as a boxedEntry whose box holds the value of the latest update in
	// place.
	value V
	// expire is the expiry time in Unix nanoseconds, 0 for none. An
	// update in place only moves it later; removedMark and expiredMark
	// mark an entry that a writer removed (see value.go).
	expire atomic.Int64
}

// newTable returns an empty table with room for about n entries.
func newTable[K comparable, V any](n int) *table[K, V] {
	size := ceilPow2(uint64(max(n, 4)) * tableSlotsPerEntry)
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
		if sl.hash.Load() == hash && e != t.tomb && e.Key == key {
			return e
		}
	}
}

// find returns the slot of key, or -1. Writers only.
func (t *table[K, V]) find(key K, hash uint64) int {
	i, _ := t.lookup(key, hash)
	return i
}

// lookup returns the slot of key, or -1 and the slot where key would be
// inserted (the first tombstone or nil slot of its probe). Writers only.
func (t *table[K, V]) lookup(key K, hash uint64) (found, free int) {
	free = -1
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		e := sl.e.Load()
		if e == nil {
			if free < 0 {
				free = int(i)
			}
			return -1, free
		}
		if e == t.tomb {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		if sl.hash.Load() == hash && e.Key == key {
			return int(i), -1
		}
	}
}

// insert stores e, whose key t does not hold, in slot free (from lookup)
// and returns the table to use from now on (a new one if this one was too
// full). Writers only; the caller publishes the returned table.
func (t *table[K, V]) insert(e *entry[K, V], free int) *table[K, V] {
	sl := &t.slots[free]
	if sl.e.Load() == nil {
		t.used++
	}
	sl.hash.Store(e.Hash)
	sl.e.Store(e)
	e.slot = int32(free)
	t.live++
	if t.used*tableMaxLoadDen > len(t.slots)*tableMaxLoadNum {
		return t.rebuild()
	}
	return t
}

// replace stores e in the slot of the entry it replaces, which holds the
// same key. Writers only.
func (t *table[K, V]) replace(e *entry[K, V]) {
	t.slots[e.slot].e.Store(e)
}

// remove deletes the entry of node n, which must be in t. Writers only.
func (t *table[K, V]) remove(n *Node[K]) {
	i := uint64(n.slot)
	t.live--
	if t.slots[(i+1)&t.mask].e.Load() != nil {
		t.slots[i].e.Store(t.tomb)
		return
	}
	// Nothing follows: no probe needs to pass this slot, nor the
	// tombstones right before it.
	t.slots[i].e.Store(nil)
	t.used--
	for j := (i - 1) & t.mask; t.slots[j].e.Load() == t.tomb; j = (j - 1) & t.mask {
		t.slots[j].e.Store(nil)
		t.used--
	}
}

// rebuild returns a fresh table holding the live entries.
func (t *table[K, V]) rebuild() *table[K, V] {
	nt := newTable[K, V](t.live)
	for i := range t.slots {
		if e := t.slots[i].e.Load(); e != nil && e != t.tomb {
			j := e.Hash & nt.mask
			for nt.slots[j].e.Load() != nil {
				j = (j + 1) & nt.mask
			}
			nt.slots[j].hash.Store(e.Hash)
			nt.slots[j].e.Store(e)
			e.slot = int32(j)
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
