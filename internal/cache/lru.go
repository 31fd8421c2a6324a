package cache

// LRU is the least-recently-used policy: a hit moves the key to the most
// recently used end of one list, and eviction takes keys from the other end.
// Every operation is O(1). LRU adapts instantly to a change of working set
// but keeps nothing of a key's history, so a scan or a loop slightly larger
// than the cache flushes it completely (0 % hits on the loop trace).
type LRU[K comparable] struct {
	limits Limits
	q      list[K]
}

// NewLRU returns an empty LRU policy bounded by l.
func NewLRU[K comparable](l Limits) *LRU[K] {
	p := &LRU[K]{limits: l}
	p.q.init()
	return p
}

// Name returns "lru".
func (p *LRU[K]) Name() string { return PolicyLRU }

// Len returns the number of resident nodes.
func (p *LRU[K]) Len() int { return p.q.len }

// Cost returns the sum of the resident nodes' costs.
func (p *LRU[K]) Cost() int64 { return p.q.cost }

// Add inserts n as the most recently used node and evicts the least recently
// used ones until the limits hold. A node too big for the limits is rejected.
func (p *LRU[K]) Add(n *Node[K], evicted []*Node[K]) []*Node[K] {
	if p.limits.tooBig(n.Cost) {
		n.rejected = true
		return append(evicted, n)
	}
	n.rejected = false
	p.q.pushBack(n)
	return p.evict(evicted)
}

// Hit moves n to the most recently used end.
func (p *LRU[K]) Hit(n *Node[K]) { p.q.moveToBack(n) }

// Update sets n's cost, moves it to the most recently used end and evicts as
// needed; n itself is evicted if it no longer fits at all.
func (p *LRU[K]) Update(n *Node[K], cost int64, evicted []*Node[K]) []*Node[K] {
	p.q.cost += cost - n.Cost
	n.Cost = cost
	if p.limits.tooBig(cost) {
		p.q.remove(n)
		n.rejected = true
		return append(p.evict(evicted), n)
	}
	p.q.moveToBack(n)
	return p.evict(evicted)
}

// Remove unlinks n.
func (p *LRU[K]) Remove(n *Node[K]) { p.q.remove(n) }

func (p *LRU[K]) evict(evicted []*Node[K]) []*Node[K] {
	for p.limits.over(p.q.len, p.q.cost) {
		v := p.q.front()
		p.q.remove(v)
		evicted = append(evicted, v)
	}
	return evicted
}
