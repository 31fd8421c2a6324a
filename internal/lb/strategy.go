package lb

import (
	"cmp"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// strategy chooses one backend for a request.
//
// healthy is the current list of backends that are up, in configuration
// order, and is never empty. A strategy must not return a backend in exclude.
// It returns nil when every healthy backend is excluded.
type strategy interface {
	pick(key string, healthy, exclude []*Backend) *Backend
}

// roundRobin hands out the healthy backends in turn.
type roundRobin struct {
	next atomic.Uint64
}

func (s *roundRobin) pick(_ string, healthy, exclude []*Backend) *Backend {
	n := uint64(len(healthy))
	start := s.next.Add(1) - 1
	// Without exclusions the first candidate is taken, so every healthy
	// backend gets exactly one of each len(healthy) consecutive picks.
	for i := range n {
		be := healthy[(start+i)%n]
		if !excluded(be, exclude) {
			return be
		}
	}
	return nil
}

// leastConn hands a request to the healthy backend with the fewest requests
// in flight. The scan starts at a rotating position and keeps the first
// minimum it finds, so ties (for instance, all backends idle) go round robin.
//
// The in-flight count is read and then incremented by Pick without a lock, so
// two simultaneous picks can both choose the same backend. The counts stay
// exact; only the choice is approximate, which is the usual trade-off.
type leastConn struct {
	next atomic.Uint64
}

func (s *leastConn) pick(_ string, healthy, exclude []*Backend) *Backend {
	n := uint64(len(healthy))
	start := s.next.Add(1) - 1
	var best *Backend
	var bestLoad int64
	for i := range n {
		be := healthy[(start+i)%n]
		if excluded(be, exclude) {
			continue
		}
		if load := be.inflight.Load(); best == nil || load < bestLoad {
			best, bestLoad = be, load
		}
	}
	return best
}

// consistentHash maps keys to backends with a hash ring.
//
// Each backend owns VirtualNodes points on a ring of 64-bit hashes. A key is
// served by the owner of the first point at or after the key's hash (wrapping
// around at the end), skipping points whose backend is down or excluded. So
// when a backend goes down, each of its keys moves to the next healthy owner
// clockwise, and no other key moves; when it comes back, its keys return.
// Many points per backend spread one backend's keys over all the others.
type consistentHash struct {
	ring     []ringPoint // sorted by hash
	fallback roundRobin  // for requests without a key
}

// ringPoint is one virtual node.
type ringPoint struct {
	hash    uint64
	backend *Backend
	order   int // index of backend in the configuration, to order equal hashes
}

func newConsistentHash(backends []*Backend, virtualNodes int) *consistentHash {
	ring := make([]ringPoint, 0, len(backends)*virtualNodes)
	for order, be := range backends {
		// Points are named after the backend's host:port rather than its
		// position, so reordering the configuration moves no key.
		for i := range virtualNodes {
			ring = append(ring, ringPoint{
				hash:    xxhash.Sum64String(be.name + "#" + strconv.Itoa(i)),
				backend: be,
				order:   order,
			})
		}
	}
	slices.SortFunc(ring, func(a, b ringPoint) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.order, b.order))
	})
	return &consistentHash{ring: ring}
}

func (s *consistentHash) pick(key string, healthy, exclude []*Backend) *Backend {
	if key == "" {
		// With no key there is nothing to be sticky to; spreading the
		// requests is better than sending all of them to one backend.
		return s.fallback.pick(key, healthy, exclude)
	}
	h := xxhash.Sum64String(key)
	start := sort.Search(len(s.ring), func(i int) bool { return s.ring[i].hash >= h })
	for i := range len(s.ring) {
		p := s.ring[(start+i)%len(s.ring)]
		if p.backend.up.Load() && !excluded(p.backend, exclude) {
			return p.backend
		}
	}
	return nil
}
