// Package kvstore is Blueprint's NoSQL store (blueprint section 6) for
// semi-structured, high-write data that needs no joins: counters, sessions,
// feed and activity lists. The embedded driver is Pebble (an LSM tree,
// counters as merge operands: no read-modify-write); the scale-out driver
// is Redis — one server or a Redis Cluster through the same client. Both
// pass one conformance suite (kvstoretest).
//
// The SQL store stays the source of truth for anything that must not be
// lost; what lives here can be rebuilt from it or tolerates a bounded loss
// (Redis replication is asynchronous: an acknowledged write can be lost in
// a failover).
package kvstore

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a key that does not exist or has expired.
var ErrNotFound = errors.New("kvstore: not found")

// Store is a key-value store with counters and capped lists. Keys are
// strings of at most MaxKeyLen bytes; values at most MaxValueLen.
type Store interface {
	// Get returns a value set with Set.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores a value; ttl ≤ 0 means no expiry.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes a value, a counter and a list of that name.
	Delete(ctx context.Context, key string) error
	// Incr adds delta to a counter (created at 0) and returns its value
	// after this increment; concurrent increments all count.
	Incr(ctx context.Context, key string, delta int64) (int64, error)
	// Counter returns a counter's value (0 if it was never incremented).
	Counter(ctx context.Context, key string) (int64, error)
	// Push adds val at the head of a list and keeps its newest maxLen
	// items (maxLen ≤ 0: unbounded).
	Push(ctx context.Context, list string, val []byte, maxLen int) error
	// Range returns up to limit items of a list, newest first.
	Range(ctx context.Context, list string, limit int) ([][]byte, error)
	Close() error
}

// Limits on what callers may store.
const (
	MaxKeyLen   = 512
	MaxValueLen = 1 << 20
)

// check validates a key and a value.
func check(key string, val []byte) error {
	if key == "" || len(key) > MaxKeyLen {
		return errors.New("kvstore: key must be 1..512 bytes")
	}
	if len(val) > MaxValueLen {
		return errors.New("kvstore: value over 1 MiB")
	}
	return nil
}
