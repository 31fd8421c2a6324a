package cache

// LFU is the least-frequently-used policy in O(1) time per operation, after
// Shah, Mitra and Matani, "An O(1) algorithm for implementing the LFU cache
// eviction scheme" (2010). Resident keys sit in frequency buckets: a doubly
// linked list of buckets in increasing order of access count, each holding a
// list of its keys from least to most recently used. A hit moves the key to
// the bucket of the next count (creating it next to the current one if it is
// missing); eviction takes the least recently used key of the lowest
// bucket. No operation searches, so all are O(1).
//
// Counts never decay and a key's count is forgotten when it is evicted: LFU
// holds on to keys that were hot long ago and starves new ones, which is why
// TinyLFU keeps an aged frequency sketch beside a recency window instead.
type LFU[K comparable] struct {
	limits Limits
	// head is the sentinel of the circular bucket list; head.next is the
	// bucket of the lowest count.
	head lfuBucket[K]
	len  int
	cost int64
	// spare is one empty bucket kept for reuse, so that a hit that empties
	// its bucket and needs a new one does not allocate.
	spare *lfuBucket[K]
}

// lfuBucket holds the resident keys that were accessed count times.
type lfuBucket[K comparable] struct {
	count      uint64
	items      list[K]
	prev, next *lfuBucket[K]
}

// NewLFU returns an empty LFU policy bounded by l.
func NewLFU[K comparable](l Limits) *LFU[K] {
	p := &LFU[K]{limits: l}
	p.head.next = &p.head
	p.head.prev = &p.head
	return p
}

// Name returns "lfu".
func (p *LFU[K]) Name() string { return PolicyLFU }

// Len returns the number of resident nodes.
func (p *LFU[K]) Len() int { return p.len }

// Cost returns the sum of the resident nodes' costs.
func (p *LFU[K]) Cost() int64 { return p.cost }

// Add inserts n with an access count of 1 after evicting, if the limits
// require it, the least frequently used nodes (which may not be n). A node
// too big for the limits is rejected.
func (p *LFU[K]) Add(n *Node[K], evicted []*Node[K]) []*Node[K] {
	if p.limits.tooBig(n.Cost) {
		n.rejected = true
		return append(evicted, n)
	}
	n.rejected = false
	// Evict before inserting: the newcomer would otherwise be the least
	// frequently used key and evict itself at once.
	for p.len > 0 && p.limits.over(p.len+1, p.cost+n.Cost) {
		evicted = append(evicted, p.evictOne())
	}
	first := p.head.next
	if first == &p.head || first.count != 1 {
		first = p.insertAfter(&p.head, 1)
	}
	p.link(n, first)
	return evicted
}

// Hit moves n to the bucket of the next access count.
func (p *LFU[K]) Hit(n *Node[K]) {
	b := n.bucket
	next := b.next
	if next == &p.head || next.count != b.count+1 {
		if b.items.len == 1 {
			// n is alone: bump the bucket's count in place.
			b.count++
			return
		}
		next = p.insertAfter(b, b.count+1)
	}
	p.unlink(n)
	p.link(n, next)
}

// Update sets n's cost, counts an access and evicts as needed; n itself is
// evicted if it no longer fits at all.
func (p *LFU[K]) Update(n *Node[K], cost int64, evicted []*Node[K]) []*Node[K] {
	p.cost += cost - n.Cost
	n.bucket.items.cost += cost - n.Cost
	n.Cost = cost
	if p.limits.tooBig(cost) {
		p.unlink(n)
		n.rejected = true
		evicted = append(evicted, n)
	} else {
		p.Hit(n)
	}
	for p.limits.over(p.len, p.cost) {
		evicted = append(evicted, p.evictOne())
	}
	return evicted
}

// Remove unlinks n.
func (p *LFU[K]) Remove(n *Node[K]) { p.unlink(n) }

// evictOne unlinks and returns the least recently used node of the lowest
// bucket. The policy must not be empty.
func (p *LFU[K]) evictOne() *Node[K] {
	v := p.head.next.items.front()
	p.unlink(v)
	return v
}

// link appends n to bucket b.
func (p *LFU[K]) link(n *Node[K], b *lfuBucket[K]) {
	b.items.pushBack(n)
	n.bucket = b
	p.len++
	p.cost += n.Cost
}

// unlink removes n from its bucket, and the bucket from the list if it is
// left empty.
func (p *LFU[K]) unlink(n *Node[K]) {
	b := n.bucket
	b.items.remove(n)
	n.bucket = nil
	p.len--
	p.cost -= n.Cost
	if b.items.len == 0 {
		b.prev.next = b.next
		b.next.prev = b.prev
		b.prev, b.next = nil, nil
		p.spare = b
	}
}

// insertAfter links a new empty bucket of the given count after b.
func (p *LFU[K]) insertAfter(b *lfuBucket[K], count uint64) *lfuBucket[K] {
	nb := p.spare
	if nb != nil {
		p.spare = nil
	} else {
		nb = &lfuBucket[K]{}
		nb.items.init()
	}
	nb.count = count
	nb.prev = b
	nb.next = b.next
	b.next.prev = nb
	b.next = nb
	return nb
}
