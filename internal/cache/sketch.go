package cache

import "math/bits"

// sketch estimates how often each key hash was seen recently: a count-min
// sketch of 4-bit counters (TinyLFU, Einziger, Friedman and Manes, ACM ToS
// 2017) with an optional doorkeeper and periodic aging.
//
// Layout: the table is an array of 64-byte blocks of eight uint64 words,
// each word holding sixteen 4-bit counters. A key maps to one block (so an
// increment or a lookup touches one cache line) and to one counter in each
// of four word pairs of that block; its estimate is the minimum of the four.
//
// Doorkeeper: a Bloom filter in front of the counters. The first sighting
// of a key in a period only sets its doorkeeper bits; later ones increment
// the counters, and the estimate adds one for a key the doorkeeper holds.
// Keys seen once (most of a long-tailed workload) then never touch the
// counters, which keeps the estimates of the others cleaner.
//
// Aging: after period counted additions every counter is halved and the
// doorkeeper cleared, so the estimates follow a changing workload.
type sketch struct {
	table     []uint64
	blockMask uint64 // number of blocks - 1
	door      []uint64
	doorMask  uint64 // number of doorkeeper bits - 1
	additions uint64
	period    uint64
	entries   int // the number of entries the table was sized for
}

const (
	// sketchResetMask keeps the low three bits of every 4-bit counter of a
	// word after it was shifted right by one.
	sketchResetMask = 0x7777_7777_7777_7777
	// sketchSamplesPerEntry is the aging period per expected entry.
	sketchSamplesPerEntry = 10
	// sketchWordsPerEntry is the table size per expected entry.
	sketchWordsPerEntry = 2
)

// newSketch returns a sketch sized for about entries distinct keys, with a
// doorkeeper if door is set.
func newSketch(entries int, door bool) *sketch {
	s := &sketch{}
	s.resize(entries, door)
	return s
}

// resize reallocates s for about entries keys, forgetting all counts. The
// table has two words (32 counters, 16 bytes) per expected key, at least
// one block: with one word per key (Caffeine's and otter's size) the
// default policy loses 0.2 to 1.5 points on P3 and OLTP to collisions.
func (s *sketch) resize(entries int, door bool) {
	entries = max(entries, 8)
	words := ceilPow2(uint64(entries) * sketchWordsPerEntry)
	s.table = make([]uint64, words)
	s.blockMask = words/8 - 1
	s.door = nil
	if door {
		// 8 bits per expected key, 2 probes: about 5 % false positives
		// when the period's distinct keys number the entries.
		doorBits := max(ceilPow2(uint64(entries)*8), 64)
		s.door = make([]uint64, doorBits/64)
		s.doorMask = doorBits - 1
	}
	s.additions = 0
	s.period = uint64(entries) * sketchSamplesPerEntry
	s.entries = entries
}

// counterSpread derives the counters' positions from the hash; it is
// independent of the low bits that choose the block.
func counterSpread(h uint64) uint64 {
	h = (h ^ h>>32) * 0x9e37_79b9_7f4a_7c15
	return h ^ h>>29
}

// increment counts one sighting of hash h.
func (s *sketch) increment(h uint64) {
	if s.door != nil && !s.doorAdd(h) {
		s.counted()
		return
	}
	block := (h & s.blockMask) << 3
	c := counterSpread(h)
	added := false
	for i := uint64(0); i < 4; i++ {
		b := c >> (i << 3)
		w := block + i<<1 + b&1
		shift := ((b >> 1) & 15) << 2
		if (s.table[w]>>shift)&15 != 15 {
			s.table[w] += 1 << shift
			added = true
		}
	}
	if added {
		s.counted()
	}
}

// frequency returns the estimated number of sightings of hash h in the
// current period, at most 15 (16 with the doorkeeper).
func (s *sketch) frequency(h uint64) uint64 {
	block := (h & s.blockMask) << 3
	c := counterSpread(h)
	f := uint64(15)
	for i := uint64(0); i < 4; i++ {
		b := c >> (i << 3)
		w := block + i<<1 + b&1
		shift := ((b >> 1) & 15) << 2
		f = min(f, (s.table[w]>>shift)&15)
	}
	if s.door != nil && s.doorHas(h) {
		f++
	}
	return f
}

// doorBits returns the two doorkeeper bit positions of hash h, taken from
// its high bits.
func (s *sketch) doorBits(h uint64) (uint64, uint64) {
	return (h >> 32) & s.doorMask, (h>>48 | h<<16) & s.doorMask
}

// doorHas reports whether the doorkeeper holds hash h.
func (s *sketch) doorHas(h uint64) bool {
	a, b := s.doorBits(h)
	return s.door[a>>6]&(1<<(a&63)) != 0 && s.door[b>>6]&(1<<(b&63)) != 0
}

// doorAdd adds hash h to the doorkeeper and reports whether it was there
// already.
func (s *sketch) doorAdd(h uint64) bool {
	a, b := s.doorBits(h)
	had := s.door[a>>6]&(1<<(a&63)) != 0 && s.door[b>>6]&(1<<(b&63)) != 0
	s.door[a>>6] |= 1 << (a & 63)
	s.door[b>>6] |= 1 << (b & 63)
	return had
}

// counted advances the aging period by one addition.
func (s *sketch) counted() {
	s.additions++
	if s.additions >= s.period {
		s.age()
	}
}

// age halves every counter and clears the doorkeeper.
func (s *sketch) age() {
	odd := 0
	for i, w := range s.table {
		odd += bits.OnesCount64(w & 0x1111_1111_1111_1111)
		s.table[i] = (w >> 1) & sketchResetMask
	}
	clear(s.door)
	// Each key has four counters: the odd ones lost a quarter of an
	// addition each to the integer halving.
	s.additions = (s.additions - min(s.additions, uint64(odd)/4)) / 2
}

// ceilPow2 returns the smallest power of two ≥ x (1 for x = 0).
func ceilPow2(x uint64) uint64 {
	if x <= 1 {
		return 1
	}
	return 1 << bits.Len64(x-1)
}
