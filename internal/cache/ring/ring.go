// Package ring maps cache keys to nodes with rendezvous (highest random
// weight) hashing: each key goes to the node with the highest hash of
// (node, key). Adding an nth node moves only the keys the new node now
// wins, about 1/n of them; removing a node moves only its own keys; and
// routing around a dead node needs no rebuilt ring: the key goes to the
// best live node, the one it would have moved to anyway.
//
// Pick costs one hash per node, which for the handful of cache nodes a
// platform runs is cheaper than a ring lookup and needs no virtual nodes
// to balance.
package ring

import (
	"github.com/cespare/xxhash/v2"
)

// Ring is an immutable set of nodes. The zero value has no nodes.
type Ring struct {
	nodes []string
	seeds []uint64
}

// New returns a ring of the named nodes (their names are their identity:
// keep them stable, e.g. host:port).
func New(nodes ...string) *Ring {
	r := &Ring{nodes: append([]string(nil), nodes...)}
	for _, n := range nodes {
		r.seeds = append(r.seeds, xxhash.Sum64String(n))
	}
	return r
}

// Nodes returns the node names.
func (r *Ring) Nodes() []string { return append([]string(nil), r.nodes...) }

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

// mix is the SplitMix64 finaliser: it spreads the combined hash so that
// the node scores of one key are independent.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Pick returns the index of the node that owns key among those for which
// alive returns true (alive nil: all), or -1 when none is alive.
func (r *Ring) Pick(key string, alive func(i int) bool) int {
	h := xxhash.Sum64String(key)
	best, bestScore := -1, uint64(0)
	for i, s := range r.seeds {
		if alive != nil && !alive(i) {
			continue
		}
		if score := mix(h ^ s); best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}
