package cache

// Node is one resident key as a Policy sees it. The Cache embeds a Node in
// each of its entries; the simulator allocates bare Nodes. Key, Hash and Cost
// are set by the caller before the Node is given to Policy.Add; the other
// fields belong to the policy that holds the node.
type Node[K comparable] struct {
	// Key is the cache key.
	Key K
	// Hash is a well-mixed 64-bit hash of Key. Policies that count
	// frequencies (TinyLFU, S3-FIFO's ghost queue) use it instead of hashing
	// the key again.
	Hash uint64
	// Cost is the entry's weight: its size in bytes when the cache is bounded
	// by bytes. It is at least 1. Change it only through Policy.Update.
	Cost int64

	prev, next *Node[K]
	bucket     *lfuBucket[K] // LFU: the frequency bucket holding the node
	expiryIdx  int32         // Cache: 1 + index in the shard's expiry heap, 0 if none
	slot       int32         // Cache: index of the key's entry in the shard's table
	queue      uint8         // policy-specific: which queue the node is in
	freq       uint8         // S3-FIFO: saturating access counter (0..3)
	rejected   bool          // set when an admission filter turned the node away
	gone       bool          // Cache: the node has left its policy (deleted, evicted, expired)
}

// Rejected reports whether a policy evicted n because its admission filter
// preferred the entry already resident (TinyLFU), or because n alone exceeds
// the policy's limits, rather than to make room for another entry.
func (n *Node[K]) Rejected() bool { return n.rejected }

// list is an intrusive, circular, doubly linked list of Nodes with a
// sentinel. The front is the oldest (least recently pushed) node.
type list[K comparable] struct {
	root Node[K]
	len  int
	cost int64
}

func (l *list[K]) init() {
	l.root.next = &l.root
	l.root.prev = &l.root
}

// front returns the oldest node, or nil if l is empty.
func (l *list[K]) front() *Node[K] {
	if l.len == 0 {
		return nil
	}
	return l.root.next
}

// after returns the node following n in l, or nil if n is the last one.
func (l *list[K]) after(n *Node[K]) *Node[K] {
	if n.next == &l.root {
		return nil
	}
	return n.next
}

// pushBack appends n as the newest node.
func (l *list[K]) pushBack(n *Node[K]) {
	last := l.root.prev
	n.prev = last
	n.next = &l.root
	last.next = n
	l.root.prev = n
	l.len++
	l.cost += n.Cost
}

// remove unlinks n, which must be in l.
func (l *list[K]) remove(n *Node[K]) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
	l.len--
	l.cost -= n.Cost
}

// moveToBack makes n, which must be in l, the newest node.
func (l *list[K]) moveToBack(n *Node[K]) {
	if l.root.prev == n {
		return
	}
	n.prev.next = n.next
	n.next.prev = n.prev
	last := l.root.prev
	n.prev = last
	n.next = &l.root
	last.next = n
	l.root.prev = n
}

// transplant puts nn in the place of n in its policy: nn takes n's links,
// queue, counters and cost, n's neighbours (or its list's sentinel) point
// to nn, and n is marked gone. The Cache uses it when an update publishes a
// new entry, whose embedded node replaces the old entry's; the policy then
// sees one node that stayed where it was. The caller holds the shard's
// mutex and fixes any other reference to n (the expiry heap).
func (n *Node[K]) transplant(nn *Node[K]) {
	nn.Cost = n.Cost
	nn.prev, nn.next = n.prev, n.next
	nn.bucket = n.bucket
	nn.expiryIdx = n.expiryIdx
	nn.slot = n.slot
	nn.queue = n.queue
	nn.freq = n.freq
	nn.rejected = n.rejected
	if nn.prev != nil {
		nn.prev.next = nn
		nn.next.prev = nn
	}
	n.prev, n.next, n.bucket = nil, nil, nil
	n.expiryIdx = 0
	n.gone = true
}
