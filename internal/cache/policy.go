package cache

import (
	"fmt"
	"slices"
	"strings"
)

// Policy decides which keys a bounded cache keeps. A Policy is not safe for
// concurrent use: the Cache calls it under a shard lock, the simulator from
// one goroutine.
//
// Every method runs in O(1) time, amortized, except where a policy's
// documentation says otherwise; the eviction loops run once per evicted node.
// Nodes that a method evicts are unlinked from the policy and appended to the
// slice it is given, which it returns; the caller then forgets them. A node
// with Rejected() true was turned away by the policy's admission filter
// instead of being evicted to make room.
type Policy[K comparable] interface {
	// Name returns the policy's registered name, such as "lru".
	Name() string
	// Add makes n, which the policy does not hold, resident, then evicts
	// until the policy is within its limits. n itself may be among the
	// evicted nodes.
	Add(n *Node[K], evicted []*Node[K]) []*Node[K]
	// Hit records an access to the resident node n.
	Hit(n *Node[K])
	// Update sets the cost of the resident node n, records an access to it
	// and evicts until the policy is within its limits.
	Update(n *Node[K], cost int64, evicted []*Node[K]) []*Node[K]
	// Remove unlinks the resident node n without counting an eviction, for
	// an explicit delete or an expiry.
	Remove(n *Node[K])
	// Len returns the number of resident nodes.
	Len() int
	// Cost returns the sum of the resident nodes' costs.
	Cost() int64
}

// Limits bound a Policy. At least one of them must be positive; a zero
// field does not bound.
type Limits struct {
	// MaxEntries bounds the number of resident nodes.
	MaxEntries int
	// MaxCost bounds the sum of the resident nodes' costs.
	MaxCost int64
}

// validate reports whether l bounds anything.
func (l Limits) validate() error {
	switch {
	case l.MaxEntries < 0:
		return fmt.Errorf("cache: MaxEntries %d is negative", l.MaxEntries)
	case l.MaxCost < 0:
		return fmt.Errorf("cache: MaxCost %d is negative", l.MaxCost)
	case l.MaxEntries == 0 && l.MaxCost == 0:
		return fmt.Errorf("cache: a policy needs MaxEntries or MaxCost")
	}
	return nil
}

// over reports whether n nodes of total cost exceed l.
func (l Limits) over(n int, cost int64) bool {
	return (l.MaxEntries > 0 && n > l.MaxEntries) || (l.MaxCost > 0 && cost > l.MaxCost)
}

// tooBig reports whether the node of cost c can never fit within l.
func (l Limits) tooBig(c int64) bool { return l.MaxCost > 0 && c > l.MaxCost }

// weighted reports whether l bounds cost, so that policies size their
// regions in cost units rather than in entries.
func (l Limits) weighted() bool { return l.MaxCost > 0 }

// capacity is the size of the whole policy in its region unit: cost if l is
// weighted, entries otherwise.
func (l Limits) capacity() int64 {
	if l.weighted() {
		return l.MaxCost
	}
	return int64(l.MaxEntries)
}

// PolicyNames returns the names NewPolicy accepts, sorted.
func PolicyNames() []string {
	names := []string{PolicyLRU, PolicyLFU, PolicyTinyLFU, PolicyTinyLFUStatic, PolicyS3FIFO}
	slices.Sort(names)
	return names
}

// The registered policy names.
const (
	// PolicyLRU is least recently used (NewLRU).
	PolicyLRU = "lru"
	// PolicyLFU is least frequently used with O(1) frequency lists (NewLFU).
	PolicyLFU = "lfu"
	// PolicyTinyLFU is adaptive W-TinyLFU, the default (NewTinyLFU).
	PolicyTinyLFU = "tinylfu"
	// PolicyTinyLFUStatic is W-TinyLFU with a fixed 1 % window and no hill
	// climbing, as in the TinyLFU paper; kept for comparison.
	PolicyTinyLFUStatic = "tinylfu-static"
	// PolicyS3FIFO is S3-FIFO (NewS3FIFO).
	PolicyS3FIFO = "s3fifo"
)

// NewPolicy returns a new policy by registered name (see PolicyNames),
// bounded by l. The seed feeds the random choices of TinyLFU's admission;
// the same seed and the same requests give the same evictions.
func NewPolicy[K comparable](name string, l Limits, seed uint64) (Policy[K], error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	switch name {
	case PolicyLRU:
		return NewLRU[K](l), nil
	case PolicyLFU:
		return NewLFU[K](l), nil
	case PolicyTinyLFU:
		return NewTinyLFU[K](l, TinyLFUOptions{Adaptive: true, Doorkeeper: true, Seed: seed}), nil
	case PolicyTinyLFUStatic:
		return NewTinyLFU[K](l, TinyLFUOptions{Doorkeeper: true, Seed: seed}), nil
	case PolicyS3FIFO:
		return NewS3FIFO[K](l), nil
	}
	return nil, fmt.Errorf("cache: unknown policy %q (want one of %s)", name, strings.Join(PolicyNames(), ", "))
}
