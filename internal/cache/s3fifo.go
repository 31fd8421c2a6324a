package cache

// S3FIFO is S3-FIFO (Yang et al., "FIFO queues are all you need for cache
// eviction", SOSP 2023): three FIFO queues and no list moves on a hit.
//
//   - small (10 % of the cache) receives new keys;
//   - main holds the keys that proved themselves;
//   - ghost remembers the hashes (not the values) of as many keys as main
//     holds, among those recently evicted from small.
//
// A hit only increments the node's 2-bit counter. When small is over its
// share, its oldest key moves to main if it was hit at least
// s3fifoPromoteHits times while in small, and otherwise is evicted and its
// hash put in ghost. A new key whose hash is in ghost goes straight to main.
// Main evicts like CLOCK: its oldest key is reinserted with its counter
// decremented while the counter is positive, and evicted otherwise.
//
// All operations are O(1), amortized for main's reinsertions. Hits touch no
// shared list, which is what makes S3-FIFO attractive for a concurrent
// cache; its hit ratio is close to W-TinyLFU's on most web workloads but it
// has no frequency history beyond ghost, which costs it on loops and long
// frequency-skewed traces (see docs/cache.md).
type S3FIFO[K comparable] struct {
	limits      Limits
	small, main list[K]
	smallMax    int64 // region units
	ghost       ghost
}

const (
	qSmall uint8 = iota + 1
	qMain
)

const (
	s3fifoSmallShare = 0.10
	// s3fifoPromoteHits is how many hits in small move a key to main rather
	// than out; the paper uses "freq > 1".
	s3fifoPromoteHits = 2
)

// NewS3FIFO returns an empty S3-FIFO policy bounded by l.
func NewS3FIFO[K comparable](l Limits) *S3FIFO[K] {
	p := &S3FIFO[K]{limits: l}
	p.small.init()
	p.main.init()
	p.smallMax = max(int64(s3fifoSmallShare*float64(l.capacity())), 1)
	ghostCap := 1 << 10
	if !l.weighted() {
		ghostCap = max(l.MaxEntries-int(p.smallMax), 1)
	}
	p.ghost.init(ghostCap)
	return p
}

// Name returns "s3fifo".
func (p *S3FIFO[K]) Name() string { return PolicyS3FIFO }

// Len returns the number of resident nodes.
func (p *S3FIFO[K]) Len() int { return p.small.len + p.main.len }

// Cost returns the sum of the resident nodes' costs.
func (p *S3FIFO[K]) Cost() int64 { return p.small.cost + p.main.cost }

func (p *S3FIFO[K]) size(q *list[K]) int64 {
	if p.limits.weighted() {
		return q.cost
	}
	return int64(q.len)
}

// Add inserts n into small, or into main if ghost remembers it, and evicts
// until the limits hold. A node too big for the limits is rejected.
func (p *S3FIFO[K]) Add(n *Node[K], evicted []*Node[K]) []*Node[K] {
	if p.limits.tooBig(n.Cost) {
		n.rejected = true
		return append(evicted, n)
	}
	n.rejected = false
	n.freq = 0
	if p.ghost.has(n.Hash) {
		n.queue = qMain
		p.main.pushBack(n)
	} else {
		n.queue = qSmall
		p.small.pushBack(n)
	}
	if p.limits.weighted() && p.main.len > p.ghost.capacity() {
		p.ghost.init(2 * p.ghost.capacity())
	}
	return p.evict(evicted)
}

// Hit increments n's saturating counter.
func (p *S3FIFO[K]) Hit(n *Node[K]) {
	if n.freq < 3 {
		n.freq++
	}
}

// Update sets n's cost, counts a hit and evicts as needed; n itself is
// evicted if it no longer fits at all.
func (p *S3FIFO[K]) Update(n *Node[K], cost int64, evicted []*Node[K]) []*Node[K] {
	q := p.queueOf(n)
	q.cost += cost - n.Cost
	n.Cost = cost
	if p.limits.tooBig(cost) {
		q.remove(n)
		n.rejected = true
		evicted = append(evicted, n)
	} else {
		p.Hit(n)
	}
	return p.evict(evicted)
}

// Remove unlinks n.
func (p *S3FIFO[K]) Remove(n *Node[K]) { p.queueOf(n).remove(n) }

func (p *S3FIFO[K]) queueOf(n *Node[K]) *list[K] {
	if n.queue == qSmall {
		return &p.small
	}
	return &p.main
}

func (p *S3FIFO[K]) evict(evicted []*Node[K]) []*Node[K] {
	for p.limits.over(p.Len(), p.Cost()) {
		if p.small.len > 0 && (p.size(&p.small) > p.smallMax || p.main.len == 0) {
			evicted = p.evictSmall(evicted)
		} else {
			evicted = p.evictMain(evicted)
		}
	}
	return evicted
}

// evictSmall moves small's oldest node to main or out.
func (p *S3FIFO[K]) evictSmall(evicted []*Node[K]) []*Node[K] {
	n := p.small.front()
	p.small.remove(n)
	if n.freq >= s3fifoPromoteHits {
		n.freq = 0
		n.queue = qMain
		p.main.pushBack(n)
		return evicted
	}
	p.ghost.add(n.Hash)
	return append(evicted, n)
}

// evictMain evicts main's oldest node whose counter is zero, reinserting
// the ones it passes with their counters decremented. It terminates: each
// pass decrements a counter, and counters are at most 3.
func (p *S3FIFO[K]) evictMain(evicted []*Node[K]) []*Node[K] {
	for {
		n := p.main.front()
		if n.freq == 0 {
			p.main.remove(n)
			return append(evicted, n)
		}
		n.freq--
		p.main.moveToBack(n)
	}
}

// ghost is a FIFO of key hashes with constant-time membership.
type ghost struct {
	ring  []uint64
	next  int
	full  bool
	count map[uint64]uint32
}

func (g *ghost) init(capacity int) {
	g.ring = make([]uint64, capacity)
	g.next = 0
	g.full = false
	g.count = make(map[uint64]uint32, capacity)
}

func (g *ghost) capacity() int { return len(g.ring) }

func (g *ghost) has(h uint64) bool {
	_, ok := g.count[h]
	return ok
}

func (g *ghost) add(h uint64) {
	if g.full {
		old := g.ring[g.next]
		if c := g.count[old]; c <= 1 {
			delete(g.count, old)
		} else {
			g.count[old] = c - 1
		}
	}
	g.ring[g.next] = h
	g.count[h]++
	g.next++
	if g.next == len(g.ring) {
		g.next = 0
		g.full = true
	}
}
