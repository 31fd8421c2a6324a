package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Cache. The zero value is invalid: set MaxEntries,
// MaxBytes or both.
type Config[K comparable, V any] struct {
	// MaxEntries bounds the number of entries. Zero: no bound on the count.
	MaxEntries int
	// MaxBytes bounds the sum of the entries' costs, which are meant to be
	// their sizes in bytes (see Set and Weigher). Zero: no bound on cost.
	MaxBytes int64
	// Weigher returns the cost of an entry stored with a cost ≤ 0. If it is
	// nil such entries cost 1.
	Weigher func(key K, value V) int64
	// Policy is the eviction policy's name (see PolicyNames); empty means
	// PolicyTinyLFU.
	Policy string
	// TTL is the time to live of entries stored with Set. Zero: they do not
	// expire.
	TTL time.Duration
	// Shards is the number of independently locked shards, a power of two.
	// Zero picks 4 × GOMAXPROCS rounded up to a power of two, fewer if a
	// shard would get under 4096 entries (or 4 MiB with MaxBytes alone).
	// Each shard holds 1/Shards of the capacity, so the largest storable
	// entry costs MaxBytes/Shards.
	Shards int
	// SweepInterval is how often the goroutine of Start calls Sweep. Zero
	// means one second.
	SweepInterval time.Duration
	// SweepLimit bounds how many expired entries one Sweep removes per
	// shard, so that a sweep never holds a shard lock for long. Zero means
	// 1024.
	SweepLimit int
	// Now returns the current time. Nil means time.Now. Tests set it to a
	// fake clock.
	Now func() time.Time
	// AsyncReads, while the goroutine of Start runs, moves the policy's
	// bookkeeping of hits off the request path, as otter does: a Get that
	// fills a read buffer wakes that goroutine instead of replaying the
	// buffer itself, and writers leave the buffers to it too. Get is then a
	// lookup and an enqueue, but hits that arrive while the goroutine lags
	// are never given to the policy, which costs hit ratio under load
	// (docs/cache.md). Off by default: every uncontended hit reaches the
	// policy, in order.
	AsyncReads bool
}

// initialTableEntries sizes a shard's new table; it grows with its
// entries, so an empty cache of a large capacity stays small.
const initialTableEntries = 64

// readBatch is the number of hits a shard batches (see shard.reads).
const readBatch = 16

// sweepMoves bounds, per SweepLimit, the entries a Sweep moves in the
// expiry heap because an update in place gave them a later expiry.
const sweepMoves = 4

// Shard sizing bounds for Config.Shards = 0.
const (
	minShardEntries = 4096
	minShardBytes   = 4 << 20
	maxShards       = 1 << 16
)

// Cache is a bounded, concurrency-safe in-memory key-value cache with a
// pluggable eviction policy and per-entry TTL.
//
// It is split into shards by key hash. Each shard has a hash table whose
// lookups are lock-free (see table), a Policy, and a heap of expiry times;
// a mutex serializes the shard's writers and its policy. Get never takes
// the mutex in the common case: it records the hit in a small lossy buffer
// (see readBuffer) that the next writer, or the reader that fills it,
// replays into the policy. A Set that only replaces the value of a live
// key (same cost, no earlier expiry) takes no lock either: it updates the
// entry in place and records the access like a hit (see setInPlace).
// Every operation is O(1) amortized, except those on entries with a TTL,
// which also update the expiry heap in O(log n).
//
// A Cache starts no goroutine: expired entries are removed when they are
// read, by Sweep, or by the goroutine of Start until Stop.
type Cache[K comparable, V any] struct {
	shards []shard[K, V]
	shift  uint // hash >> shift picks the shard
	hasher hasher[K]
	cfg    Config[K, V]
	kind   valueKind // how entries' values are replaced in place

	// maintained is set while the goroutine of Start runs with AsyncReads:
	// readers then leave full read buffers to it (through wake) instead of
	// draining them, and writers do not drain them either.
	maintained atomic.Bool
	wake       chan struct{}

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// shard is one independently locked part of a Cache.
type shard[K comparable, V any] struct {
	// table is read by every Get: it has a cache line of its own, so that
	// writers taking mu do not invalidate it under the readers' feet.
	table atomic.Pointer[table[K, V]] // replaced by writers when it grows
	_     [56]byte

	mu      sync.Mutex // serializes writers, the policy and the expiry heap
	policy  Policy[K]
	expiry  expiryHeap[K]
	evicted []*Node[K] // scratch for the policy's evictions
	limits  Limits
	c       counters

	// reads are the striped buffers of hits not yet given to the policy.
	reads []readBuffer[K]
	// pending has bit i set when reads[i] received a hit while it was
	// empty and no writer has replayed it since: writers replay only those
	// buffers.
	pending atomic.Uint32
	_       [64]byte // keep neighbouring shards' hot fields off this cache line
}

// readBuffer is a lossy ring of nodes that were hit, with the hit and miss
// counters of the readers that use it, on cache lines of its own. Readers
// pick a buffer among their shard's by a hash of their goroutine's stack
// (one buffer when GOMAXPROCS is 1; see stripeHash), claim a slot by advancing tail with a CAS, and store the node; the
// drainer, under the shard's mutex, replays the nodes into the policy in
// order and advances head. A reader that finds its buffer full drops the
// hit for the policy (not for the counters) and tries to drain at once;
// when the mutex is free, as it always is without concurrency, the policy
// thus sees every hit, in order.
type readBuffer[K comparable] struct {
	_      [64]byte
	tail   atomic.Uint64 // slots claimed by readers ever
	head   atomic.Uint64 // slots replayed ever; drainer only
	drops  atomic.Uint64 // hits dropped because the buffer was full
	bit    uint32        // this buffer's bit in shard.pending
	misses atomic.Uint64
	sets   atomic.Uint64 // Sets done in place (see Cache.setInPlace)
	slots  [readBatch]atomic.Pointer[Node[K]]
}

// counters are a shard's statistics kept by writers, under its mutex.
type counters struct {
	sets, deletes, evictions, rejections, expirations uint64
}

// New returns an empty cache configured by cfg, or an error naming the
// first invalid field.
func New[K comparable, V any](cfg Config[K, V]) (*Cache[K, V], error) {
	switch {
	case cfg.MaxEntries < 0:
		return nil, fmt.Errorf("cache: MaxEntries %d is negative", cfg.MaxEntries)
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("cache: MaxBytes %d is negative", cfg.MaxBytes)
	case cfg.MaxEntries == 0 && cfg.MaxBytes == 0:
		return nil, errors.New("cache: set MaxEntries or MaxBytes (an unbounded cache grows until the process runs out of memory)")
	case cfg.TTL < 0:
		return nil, fmt.Errorf("cache: TTL %s is negative", cfg.TTL)
	case cfg.Shards < 0 || cfg.Shards > maxShards || cfg.Shards&(cfg.Shards-1) != 0:
		return nil, fmt.Errorf("cache: Shards %d is not a power of two between 1 and %d", cfg.Shards, maxShards)
	case cfg.SweepInterval < 0:
		return nil, fmt.Errorf("cache: SweepInterval %s is negative", cfg.SweepInterval)
	case cfg.SweepLimit < 0:
		return nil, fmt.Errorf("cache: SweepLimit %d is negative", cfg.SweepLimit)
	}
	if cfg.Policy == "" {
		cfg.Policy = PolicyTinyLFU
	}
	if cfg.Shards == 0 {
		cfg.Shards = autoShards(cfg.MaxEntries, cfg.MaxBytes)
	}
	if cfg.MaxEntries > 0 && cfg.MaxEntries < cfg.Shards {
		return nil, fmt.Errorf("cache: MaxEntries %d is less than Shards %d", cfg.MaxEntries, cfg.Shards)
	}
	if cfg.MaxBytes > 0 && cfg.MaxBytes < int64(cfg.Shards) {
		return nil, fmt.Errorf("cache: MaxBytes %d is less than Shards %d", cfg.MaxBytes, cfg.Shards)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Second
	}
	if cfg.SweepLimit == 0 {
		cfg.SweepLimit = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Cache[K, V]{
		shards: make([]shard[K, V], cfg.Shards),
		shift:  uint(64 - bits.TrailingZeros(uint(cfg.Shards))),
		hasher: newHasher[K](),
		cfg:    cfg,
		kind:   kindOf[V](),
		wake:   make(chan struct{}, 1),
	}
	stripes := 1
	if p := runtime.GOMAXPROCS(0); p > 1 {
		stripes = int(min(ceilPow2(uint64(4*p)), 16))
	}
	n := int64(cfg.Shards)
	for i := range c.shards {
		s := &c.shards[i]
		// Split the limits evenly, the remainder going to the first shards.
		s.limits = Limits{MaxEntries: cfg.MaxEntries / cfg.Shards, MaxCost: cfg.MaxBytes / n}
		if i < cfg.MaxEntries%cfg.Shards {
			s.limits.MaxEntries++
		}
		if int64(i) < cfg.MaxBytes%n {
			s.limits.MaxCost++
		}
		p, err := NewPolicy[K](cfg.Policy, s.limits, maphash.Comparable(c.hasher.seed, i))
		if err != nil {
			return nil, err
		}
		s.policy = p
		s.table.Store(newTable[K, V](initialTableEntries))
		s.reads = make([]readBuffer[K], stripes)
		for j := range s.reads {
			s.reads[j].bit = 1 << j
		}
	}
	return c, nil
}

// autoShards returns the default shard count (see Config.Shards).
func autoShards(maxEntries int, maxBytes int64) int {
	n := int(ceilPow2(uint64(4 * runtime.GOMAXPROCS(0))))
	for n > 1 {
		if maxEntries > 0 && maxEntries/n < minShardEntries ||
			maxEntries == 0 && maxBytes/int64(n) < minShardBytes {
			n /= 2
			continue
		}
		break
	}
	return n
}

func (c *Cache[K, V]) shardOf(h uint64) *shard[K, V] {
	return &c.shards[h>>c.shift]
}

// Get returns the value stored for key and whether there is one. An entry
// whose TTL has passed is removed and reported missing. Get does not wait
// for other Gets, nor, unless an entry has expired, for writers.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	h := c.hasher.hash(key)
	s := c.shardOf(h)
	rb := s.readBuffer()
	for retried := false; ; retried = true {
		e := s.table.Load().get(key, h)
		if e == nil {
			break
		}
		x := e.expire.Load()
		if x != 0 && !dead(x) && c.cfg.Now().UnixNano() >= x {
			c.expire(s, e)
			break
		}
		var v V
		if !dead(x) {
			// The value, then the mark again: a value stored by an
			// update in place after the entry was removed is not
			// returned (see entry.commitInPlace).
			v = e.load(c.kind)
			if x = e.expire.Load(); !dead(x) {
				c.recordAccess(s, rb, e)
				return v, true
			}
		}
		// Removed since the lookup; a replaced entry's successor is
		// published right after the mark, so look once more.
		if retried {
			break
		}
	}
	rb.misses.Add(1)
	var zero V
	return zero, false
}

// recordAccess records an access to e, found in s, for the policy, in the
// read buffer rb: a hit, or an update in place.
func (c *Cache[K, V]) recordAccess(s *shard[K, V], rb *readBuffer[K], e *entry[K, V]) {
	// head is loaded before tail, so that head ≤ t (a drain only advances
	// head up to the tail it saw).
	for {
		h := rb.head.Load()
		t := rb.tail.Load()
		if t-h >= readBatch {
			rb.drops.Add(1)
			c.drainOrWake(s, rb)
			break
		}
		if rb.tail.CompareAndSwap(t, t+1) {
			rb.slots[t%readBatch].Store(&e.Node)
			if t == h && s.pending.Load()&rb.bit == 0 {
				// Load first: while the bit is set (no writer
				// since), the word's cache line stays shared.
				s.pending.Or(rb.bit)
			}
			if t+1-h >= readBatch {
				c.drainOrWake(s, rb) // this hit filled the buffer
			}
			return
		}
	}
}

// readBuffer picks the calling goroutine's read buffer of s.
func (s *shard[K, V]) readBuffer() *readBuffer[K] {
	if len(s.reads) == 1 {
		return &s.reads[0]
	}
	return &s.reads[stripeHash()&uint32(len(s.reads)-1)]
}

// drainOrWake has the full read buffer rb of s replayed: by the
// maintenance goroutine if it runs, else at once if the shard's mutex is
// free. The reader replays only rb (the other buffers' hits reach the
// policy with the next writer or the next reader that fills them), so that
// it touches no other reader's cache lines.
func (c *Cache[K, V]) drainOrWake(s *shard[K, V], rb *readBuffer[K]) {
	if c.maintained.Load() {
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return
	}
	if s.mu.TryLock() {
		s.drainRing(rb)
		s.mu.Unlock()
	}
}

// writerDrain replays the read buffers of s that received hits since a
// writer last replayed them (see shard.pending) before a writer's policy
// call, unless the maintenance goroutine does it. Without concurrency every
// hit therefore reaches the policy before the next write, in order; a
// writer reads one word to find the buffers with hits and touches no idle
// reader's cache lines. Skipping a buffer (a hit claimed but not stored
// yet) only delays those hits; a buffered hit on a node that left the
// policy in between is skipped (Node.gone). The caller holds s.mu.
func (c *Cache[K, V]) writerDrain(s *shard[K, V]) {
	if c.maintained.Load() || s.pending.Load() == 0 {
		return
	}
	for m := s.pending.Swap(0); m != 0; m &= m - 1 {
		s.drainRing(&s.reads[bits.TrailingZeros32(m)])
	}
}

// maintain replays the read buffers of every shard that has buffered hits.
func (c *Cache[K, V]) maintain() {
	for i := range c.shards {
		s := &c.shards[i]
		for j := range s.reads {
			if rb := &s.reads[j]; rb.head.Load() != rb.tail.Load() {
				s.mu.Lock()
				s.drainReads()
				s.mu.Unlock()
				break
			}
		}
	}
}

// drainReads gives the buffered hits to the policy, in order within each
// buffer, skipping nodes that left the policy since they were hit. Every
// policy call but Hit must be preceded by it. The caller holds s.mu.
func (s *shard[K, V]) drainReads() {
	for i := range s.reads {
		s.drainRing(&s.reads[i])
	}
}

// drainRing gives the hits buffered in rb to the policy, in order. The
// caller holds s.mu.
//
// The nodes are first collected and, if the policy can, their cache lines
// are loaded all together (see batchPreloader): the hits of a batch are
// independent, so their cache misses overlap instead of coming one after
// another.
func (s *shard[K, V]) drainRing(rb *readBuffer[K]) {
	h, t := rb.head.Load(), rb.tail.Load()
	if h == t {
		return
	}
	var batch [readBatch]*Node[K]
	k := 0
	for ; h < t; h++ {
		// The slot is not cleared (an atomic store costs as much as the
		// reader's): a slot claimed but not stored yet by a concurrent
		// reader still holds the node of an earlier round, which then
		// gets a second hit while the new one is lost. Only concurrent
		// use can do that, and the buffer is lossy then anyway.
		n := rb.slots[h%readBatch].Load()
		if n == nil {
			break // never stored yet: next time
		}
		if !n.gone {
			batch[k] = n
			k++
		}
	}
	rb.head.Store(h)
	if k == 0 {
		return
	}
	if pl, ok := s.policy.(batchPreloader[K]); ok && k > 1 {
		pl.preload(batch[:k])
	}
	for _, n := range batch[:k] {
		s.policy.Hit(n)
	}
}

// batchPreloader is implemented by policies that can load, ahead of a batch
// of Hit calls, the memory those calls will touch.
type batchPreloader[K comparable] interface {
	preload(nodes []*Node[K])
}

// expire removes e, found expired in s, if it is still the entry of its
// key.
func (c *Cache[K, V]) expire(s *shard[K, V], e *entry[K, V]) {
	s.mu.Lock()
	t := s.table.Load()
	if i := t.find(e.Key, e.Hash); i >= 0 && t.slots[i].e.Load() == e && e.markExpired(c.cfg.Now().UnixNano()) {
		c.writerDrain(s)
		s.removeLocked(t, &e.Node)
		s.c.expirations++
	}
	s.mu.Unlock()
}

// Set stores value for key with the given cost and the configured TTL, and
// reports whether the entry is in the cache afterwards: it is not if its
// cost alone exceeds a shard's share of MaxBytes, or if the policy's
// admission filter turned it away at once. A cost ≤ 0 is replaced by
// Weigher's, or by 1 if there is no Weigher. Updating a key with the same
// cost (and a TTL that does not end earlier) takes no lock.
func (c *Cache[K, V]) Set(key K, value V, cost int64) bool {
	return c.set(key, value, cost, c.cfg.TTL)
}

// SetWithTTL is Set with a time to live for this entry: it expires ttl after
// now. A ttl ≤ 0 stores the entry without expiry.
func (c *Cache[K, V]) SetWithTTL(key K, value V, cost int64, ttl time.Duration) bool {
	return c.set(key, value, cost, ttl)
}

func (c *Cache[K, V]) set(key K, value V, cost int64, ttl time.Duration) bool {
	if cost <= 0 {
		cost = 1
		if c.cfg.Weigher != nil {
			cost = max(c.cfg.Weigher(key, value), 1)
		}
	}
	var now, expire int64
	if ttl > 0 {
		now = c.cfg.Now().UnixNano()
		expire = now + int64(ttl)
	}
	h := c.hasher.hash(key)
	s := c.shardOf(h)
	if e := s.table.Load().get(key, h); e != nil && c.setInPlace(s, e, value, cost, expire, now) {
		return true
	}
	s.mu.Lock()
	c.writerDrain(s)
	s.c.sets++
	t := s.table.Load()
	e := newEntry(c.kind, key, h, value, cost, expire)
	n := &e.Node
	var old *Node[K] // the node n replaces, if any
	if i, free := t.lookup(key, h); i >= 0 {
		// An update that changes the cost or the expiry: the new entry's
		// node takes the old one's place in the policy and the heap, and
		// the policy sets its cost; then the entry is published, so that
		// the Cost of a published node never changes.
		old = &t.slots[i].e.Load().Node
		old.transplant(n)
		if n.expiryIdx != 0 {
			s.expiry[n.expiryIdx-1].n = n
		}
		s.setExpiry(n, expire)
		s.evicted = s.policy.Update(n, cost, s.evicted[:0])
	} else {
		if nt := t.insert(e, free); nt != t {
			s.table.Store(nt)
			t = nt
		}
		s.setExpiry(n, expire)
		s.evicted = s.policy.Add(n, s.evicted[:0])
	}
	stored := !slices.Contains(s.evicted, n)
	if old != nil {
		// The old entry's mark and its successor's publication follow
		// each other, so that readers who see the mark find the new
		// entry (see Get).
		s.markRemoved(old)
		if stored {
			t.replace(e)
		}
	}
	for i, v := range s.evicted {
		s.markRemoved(v)
		t.remove(v) // for n replacing an entry: that entry's slot
		s.forget(v)
		if v.Rejected() {
			s.c.rejections++
		} else {
			s.c.evictions++
		}
		s.evicted[i] = nil
	}
	s.mu.Unlock()
	return stored
}

// setInPlace stores value in e, the published entry of its key in s, if
// the update needs no change of the policy's structures: the same cost,
// and an expiry that does not move earlier (none before and after, or a
// later one on an entry not expired yet). It reports whether it did. Such
// an update takes no lock: the value is replaced atomically (see
// entry.store), the expiry moved later by a CAS that also tells whether e
// was removed meanwhile (entry.commitInPlace; the expiry heap keeps the
// earlier time and Sweep moves the entry when it finds it there), and the
// access goes to the read buffer like a hit's, as in otter.
func (c *Cache[K, V]) setInPlace(s *shard[K, V], e *entry[K, V], value V, cost, expire, now int64) bool {
	if e.Cost != cost {
		return false
	}
	if old := e.expire.Load(); old != 0 || expire != 0 {
		if old == 0 || dead(old) || expire < old || now >= old {
			return false
		}
	}
	e.store(c.kind, value)
	if !e.commitInPlace(expire) {
		return false
	}
	rb := s.readBuffer()
	c.recordAccess(s, rb, e)
	rb.sets.Add(1)
	return true
}

// setExpiry records n's expiry time in the shard's heap.
func (s *shard[K, V]) setExpiry(n *Node[K], expire int64) {
	if expire == 0 {
		if n.expiryIdx != 0 {
			s.expiry.remove(n)
		}
		return
	}
	s.expiry.set(n, expire)
}

// removeLocked deletes the entry of n from t and n from the policy. The
// caller holds s.mu.
func (s *shard[K, V]) removeLocked(t *table[K, V], n *Node[K]) {
	s.markRemoved(n)
	t.remove(n)
	s.policy.Remove(n)
	s.forget(n)
}

// forget marks n, which left the policy, as gone and drops its expiry.
func (s *shard[K, V]) forget(n *Node[K]) {
	if n.expiryIdx != 0 {
		s.expiry.remove(n)
	}
	n.gone = true
}

// markRemoved marks the entry of n, which leaves the table right after,
// as removed (see removedMark), unless it is marked already.
func (s *shard[K, V]) markRemoved(n *Node[K]) {
	entryOf[K, V](n).markRemoved()
}

// Delete removes the entry for key and reports whether there was one.
func (c *Cache[K, V]) Delete(key K) bool {
	h := c.hasher.hash(key)
	s := c.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	i := t.find(key, h)
	if i < 0 {
		return false
	}
	c.writerDrain(s)
	s.removeLocked(t, &t.slots[i].e.Load().Node)
	s.c.deletes++
	return true
}

// Len returns the number of entries, expired ones not yet removed included.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.table.Load().live
		s.mu.Unlock()
	}
	return n
}

// Clear removes every entry. The statistics are kept.
func (c *Cache[K, V]) Clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.drainReads()
		s.table.Load().all(func(e *entry[K, V]) {
			s.policy.Remove(&e.Node)
			e.gone = true
			e.markRemoved()
		})
		s.table.Store(newTable[K, V](initialTableEntries))
		for j := range s.reads {
			// Drained slots keep their nodes (see drainRing): let the
			// removed entries go.
			for k := range s.reads[j].slots {
				s.reads[j].slots[k].Store(nil)
			}
		}
		clear(s.expiry)
		s.expiry = s.expiry[:0]
		s.mu.Unlock()
	}
}

// Sweep removes expired entries, at most Config.SweepLimit per shard, and
// returns how many it removed. Reads already hide expired entries; Sweep
// gives back the memory of those nobody reads.
func (c *Cache[K, V]) Sweep() int {
	removed := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		if !c.maintained.Load() {
			s.drainReads()
		}
		now := c.cfg.Now().UnixNano()
		t := s.table.Load()
		for done, moved := 0, 0; done < c.cfg.SweepLimit && moved < sweepMoves*c.cfg.SweepLimit; {
			n, at := s.expiry.peek()
			if n == nil || at > now {
				break
			}
			if e := entryOf[K, V](n); !e.markExpired(now) {
				// Updated in place to a later expiry since it was
				// put in the heap: move it there.
				s.expiry.set(n, e.expire.Load())
				moved++
				continue
			}
			s.removeLocked(t, n)
			s.c.expirations++
			removed++
			done++
		}
		s.mu.Unlock()
	}
	return removed
}

// Start starts the cache's maintenance goroutine, until Stop is called or
// ctx ends. It calls Sweep every Config.SweepInterval and, with
// Config.AsyncReads, gives buffered hits to the policy (see AsyncReads).
// Only caches with TTLs or AsyncReads need it.
func (c *Cache[K, V]) Start(ctx context.Context) error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.done != nil {
		return errors.New("cache: already started")
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	c.maintained.Store(c.cfg.AsyncReads)
	go func(done chan<- struct{}) {
		defer close(done)
		defer c.maintained.Store(false)
		t := time.NewTicker(c.cfg.SweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.wake:
				c.maintain()
			case <-t.C:
				c.maintain()
				c.Sweep()
			}
		}
	}(c.done)
	return nil
}

// Stop stops the goroutine of Start and waits for it, or for ctx to end.
// Stopping a cache that was not started does nothing.
func (c *Cache[K, V]) Stop(ctx context.Context) error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.done == nil {
		return nil
	}
	c.cancel()
	select {
	case <-c.done:
	case <-ctx.Done():
		return fmt.Errorf("cache: stop: %w", ctx.Err())
	}
	c.done, c.cancel = nil, nil
	return nil
}

// Stats is a snapshot of a cache's counters and occupancy.
type Stats struct {
	// Hits and Misses count Get calls that found a live entry or not.
	Hits, Misses uint64
	// Sets and Deletes count calls of Set/SetWithTTL and of Delete that
	// removed an entry.
	Sets, Deletes uint64
	// Evictions counts entries evicted to make room.
	Evictions uint64
	// Rejections counts entries the policy turned away: new keys that lost
	// TinyLFU's admission duel, and entries too big for a shard.
	Rejections uint64
	// Expirations counts entries removed because their TTL had passed.
	Expirations uint64
	// Entries and Bytes are the current number of entries and sum of their
	// costs.
	Entries int
	Bytes   int64
	// MaxEntries and MaxBytes are the configured bounds (0: none).
	MaxEntries int
	MaxBytes   int64
}

// HitRatio returns Hits / (Hits + Misses), or 0 before any Get.
func (s Stats) HitRatio() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// Stats returns the cache's statistics. Shards are read one after another,
// so under concurrent use the sums are not one atomic snapshot.
func (c *Cache[K, V]) Stats() Stats {
	st := Stats{MaxEntries: c.cfg.MaxEntries, MaxBytes: c.cfg.MaxBytes}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for j := range s.reads {
			rb := &s.reads[j]
			// Updates in place are counted in sets after they reach the
			// buffer: loading sets first keeps Hits from going negative.
			sets := rb.sets.Load()
			st.Sets += sets
			st.Hits += rb.tail.Load() + rb.drops.Load() - sets
			st.Misses += rb.misses.Load()
		}
		st.Sets += s.c.sets
		st.Deletes += s.c.deletes
		st.Evictions += s.c.evictions
		st.Rejections += s.c.rejections
		st.Expirations += s.c.expirations
		st.Entries += s.table.Load().live
		st.Bytes += s.policy.Cost()
		s.mu.Unlock()
	}
	return st
}

// Shards returns the number of shards.
func (c *Cache[K, V]) Shards() int { return len(c.shards) }

// Policy returns the eviction policy's name.
func (c *Cache[K, V]) Policy() string { return c.cfg.Policy }
