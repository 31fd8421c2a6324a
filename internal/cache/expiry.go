package cache

// expiryHeap is a binary min-heap of the expiry times of a shard's entries
// that have a TTL, so that Sweep finds the expired ones in O(log n) each
// without scanning the shard. Each node records its position (plus one) in
// Node.expiryIdx, so that an entry deleted or evicted before it expires
// leaves the heap in O(log n) too.
type expiryHeap[K comparable] []expiryItem[K]

type expiryItem[K comparable] struct {
	at int64 // Unix nanoseconds
	n  *Node[K]
}

// set makes n expire at time at, adding it or moving it as needed.
func (h *expiryHeap[K]) set(n *Node[K], at int64) {
	if i := int(n.expiryIdx) - 1; i >= 0 {
		old := (*h)[i].at
		(*h)[i].at = at
		if at < old {
			h.up(i)
		} else {
			h.down(i)
		}
		return
	}
	*h = append(*h, expiryItem[K]{at, n})
	i := len(*h) - 1
	n.expiryIdx = int32(i + 1)
	h.up(i)
}

// remove takes n out of the heap if it is there.
func (h *expiryHeap[K]) remove(n *Node[K]) {
	i := int(n.expiryIdx) - 1
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = expiryItem[K]{}
	*h = (*h)[:last]
	n.expiryIdx = 0
	if i != last {
		h.down(i)
		h.up(i)
	}
}

// peek returns the node that expires first and its time, or nil.
func (h expiryHeap[K]) peek() (*Node[K], int64) {
	if len(h) == 0 {
		return nil, 0
	}
	return h[0].n, h[0].at
}

func (h expiryHeap[K]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].n.expiryIdx = int32(i + 1)
	h[j].n.expiryIdx = int32(j + 1)
}

func (h expiryHeap[K]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].at <= h[i].at {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h expiryHeap[K]) down(i int) {
	for {
		least := i
		if l := 2*i + 1; l < len(h) && h[l].at < h[least].at {
			least = l
		}
		if r := 2*i + 2; r < len(h) && h[r].at < h[least].at {
			least = r
		}
		if least == i {
			return
		}
		h.swap(i, least)
		i = least
	}
}
