package cache

import (
	"reflect"
	"sync/atomic"
	"unsafe"
)

// valueKind says how an entry's value is read and replaced in place while
// readers may be loading it (see entry).
type valueKind uint8

const (
	// valueBoxed values are published inline and never written again; an
	// update in place stores a new copy behind boxedEntry.box.
	valueBoxed valueKind = iota
	// valueWord values are 8 bytes without pointers (int64, uint64,
	// float64, ...): loaded and stored as one atomic word.
	valueWord
	// valuePointer values are one pointer (pointers, maps, channels):
	// loaded and stored as one atomic pointer.
	valuePointer
)

// kindOf returns the valueKind of V.
func kindOf[V any]() valueKind {
	t := reflect.TypeFor[V]()
	if t.Size() != 8 || unsafe.Sizeof(uintptr(0)) != 8 {
		return valueBoxed
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.UnsafePointer, reflect.Map, reflect.Chan:
		return valuePointer
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr, reflect.Float64:
		return valueWord
	}
	return valueBoxed
}

// load returns the current value of e, which may be published.
func (e *entry[K, V]) load(kind valueKind) V {
	switch kind {
	case valueWord:
		w := atomic.LoadUint64((*uint64)(unsafe.Pointer(&e.value)))
		return *(*V)(unsafe.Pointer(&w))
	case valuePointer:
		p := atomic.LoadPointer((*unsafe.Pointer)(unsafe.Pointer(&e.value)))
		return *(*V)(unsafe.Pointer(&p))
	}
	if b := (*boxedEntry[K, V])(unsafe.Pointer(e)).box.Load(); b != nil {
		return *b
	}
	return e.value
}

// boxedEntry is how entries of valueBoxed values are allocated: the box
// field is only needed for them, and keeping it out of entry keeps the
// entries of word-sized values in a smaller size class.
type boxedEntry[K comparable, V any] struct {
	entry[K, V]
	box atomic.Pointer[V] // the value of the latest update in place, if any
}

// newEntry returns an unpublished entry for key with value, cost and
// expiry time, allocated as a boxedEntry if kind needs it.
func newEntry[K comparable, V any](kind valueKind, key K, hash uint64, value V, cost, expire int64) *entry[K, V] {
	var e *entry[K, V]
	if kind == valueBoxed {
		e = &new(boxedEntry[K, V]).entry
	} else {
		e = new(entry[K, V])
	}
	e.Key, e.Hash, e.Cost, e.value = key, hash, cost, value
	e.expire.Store(expire)
	return e
}

// store replaces the value of e, which may be published, atomically:
// a concurrent load returns either the old value or v. A boxed value
// costs one allocation of the value's size.
func (e *entry[K, V]) store(kind valueKind, v V) {
	switch kind {
	case valueWord:
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&e.value)), *(*uint64)(unsafe.Pointer(&v)))
	case valuePointer:
		atomic.StorePointer((*unsafe.Pointer)(unsafe.Pointer(&e.value)), *(*unsafe.Pointer)(unsafe.Pointer(&v)))
	default:
		b := new(V)
		*b = v
		(*boxedEntry[K, V])(unsafe.Pointer(e)).box.Store(b)
	}
}

// Marks stored in entry.expire, under the shard's mutex, when an entry
// stops being its key's entry; the store is the linearization point of
// the removal. Any clock is past them, so readers and updates in place
// see them as expired without a branch of their own.
const (
	// removedMark: deleted, evicted, replaced or cleared.
	removedMark = 1
	// expiredMark: removed because its TTL had passed.
	expiredMark = 2
)

// dead reports whether an expiry value x is one of the marks.
func dead(x int64) bool { return x == removedMark || x == expiredMark }

// markExpired marks e as expired if its expiry time is at or before now,
// and reports whether it did. A concurrent update in place that moved the
// expiry after now wins. The caller holds the shard's mutex and removes e
// if it returns true.
func (e *entry[K, V]) markExpired(now int64) bool {
	for {
		x := e.expire.Load()
		if x == 0 || x > now {
			return false
		}
		if dead(x) || e.expire.CompareAndSwap(x, expiredMark) {
			return true
		}
	}
}

// markRemoved marks e as removed, unless it is marked already. The
// caller holds the shard's mutex and unpublishes e right after.
func (e *entry[K, V]) markRemoved() {
	for {
		x := e.expire.Load()
		if dead(x) || e.expire.CompareAndSwap(x, removedMark) {
			return
		}
	}
}

// commitInPlace ends an update in place of e whose value is stored: it
// moves the expiry to at if that is later (at 0: no expiry, which the
// caller only passes for an entry without one) and reports whether the
// update stands. An entry marked removed meanwhile was removed after the
// update began, so the update is ordered just before the removal and
// stands (readers that load the value after the mark check it and miss).
// An entry marked expired does not: the caller stores the key anew, so
// that the new TTL holds.
func (e *entry[K, V]) commitInPlace(at int64) bool {
	for {
		x := e.expire.Load()
		switch x {
		case removedMark:
			return true
		case expiredMark:
			return false
		}
		if e.expire.CompareAndSwap(x, max(x, at)) {
			return true
		}
	}
}

// entryOf returns the entry that embeds n. Every node a shard's policy
// holds is a Cache entry's.
func entryOf[K comparable, V any](n *Node[K]) *entry[K, V] {
	return (*entry[K, V])(unsafe.Pointer(n))
}
