package ratelimit

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxKeys = 100_000
	DefaultIdleTTL = 10 * time.Minute
)

// shardCount is the number of independently locked parts of the key map. It
// is a fixed small number: enough that two cores rarely contend, small enough
// that the per-shard share of MaxKeys stays large.
const shardCount = 32

// tokenEpsilon absorbs float rounding in the refill, so that a caller who waits
// exactly the retryAfter it was given does get its token.
const tokenEpsilon = 1e-9

// Config configures a Limiter.
type Config struct {
	// Rate is the number of tokens added to each key's bucket per second. It
	// must be positive.
	Rate float64
	// Burst is the bucket size: the most requests a key can make at once after
	// being idle. It must be at least 1.
	Burst int
	// MaxKeys bounds the number of keys tracked at once (default 100000).
	// When the bound is reached, the least recently used key is dropped.
	MaxKeys int
	// IdleTTL is how long a key may go unused before it is forgotten (default
	// 10m). New raises it to the time a bucket takes to refill completely
	// (Burst/Rate) when that is longer, so forgetting a key never gives it
	// tokens it would not have had anyway.
	IdleTTL time.Duration
}

// Limiter is a set of token buckets, one per key. It is safe for concurrent
// use.
type Limiter struct {
	rate  float64 // tokens per second
	burst int
	ttl   int64     // nanoseconds of idleness after which a key is forgotten
	epoch time.Time // bucket times are stored as nanoseconds since epoch

	shards []shard
}

// shard is one mutex-protected part of the key map. Its buckets also form a
// doubly linked list in least-recently-used order: root.next is the most
// recently used bucket and root.prev the least recently used.
type shard struct {
	mu       sync.Mutex
	buckets  map[string]*bucket
	root     bucket // sentinel of the LRU list; holds no key
	capacity int
}

// bucket is the token bucket of one key.
type bucket struct {
	key    string
	tokens float64 // may be fractional
	last   int64   // when tokens was last brought up to date, ns since Limiter.epoch

	prev, next *bucket
}

// New returns a Limiter for cfg. It reports an error naming the field when
// cfg is invalid.
func New(cfg Config) (*Limiter, error) {
	if math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) || cfg.Rate <= 0 {
		return nil, fmt.Errorf("ratelimit: rate must be a positive number of tokens per second, got %v", cfg.Rate)
	}
	if cfg.Burst < 1 {
		return nil, fmt.Errorf("ratelimit: burst must be at least 1, got %d", cfg.Burst)
	}
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: max keys must not be negative, got %d", cfg.MaxKeys)
	}
	if cfg.IdleTTL < 0 {
		return nil, fmt.Errorf("ratelimit: idle ttl must not be negative, got %v", cfg.IdleTTL)
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.IdleTTL == 0 {
		cfg.IdleTTL = DefaultIdleTTL
	}
	ttl := max(cfg.IdleTTL, secondsToDuration(float64(cfg.Burst)/cfg.Rate))

	// Split MaxKeys over the shards so that the capacities add up to exactly
	// MaxKeys. With fewer keys than shards, use one shard per key.
	n := min(shardCount, cfg.MaxKeys)
	l := &Limiter{
		rate:   cfg.Rate,
		burst:  cfg.Burst,
		ttl:    int64(ttl),
		epoch:  time.Now(),
		shards: make([]shard, n),
	}
	for i := range l.shards {
		s := &l.shards[i]
		s.capacity = cfg.MaxKeys / n
		if i < cfg.MaxKeys%n {
			s.capacity++
		}
		s.buckets = make(map[string]*bucket)
		s.root.next = &s.root
		s.root.prev = &s.root
	}
	return l, nil
}

// Allow takes one token from key's bucket. When it returns false, no token was
// taken and retryAfter is how long until one will be available (always > 0).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.AllowN(key, time.Now(), 1)
}

// AllowN takes n tokens from key's bucket at time now, all or nothing. When it
// returns false, no token was taken and retryAfter is how long after now the n
// tokens will be available (always > 0). If n exceeds Burst the request can
// never succeed and retryAfter is the largest Duration. A non-positive n is
// always allowed and takes nothing.
//
// Passing now lets tests and batch callers control the clock. A now earlier
// than the bucket's last update adds no tokens; time never runs backwards for
// a bucket.
func (l *Limiter) AllowN(key string, now time.Time, n int) (ok bool, retryAfter time.Duration) {
	if n <= 0 {
		return true, 0
	}
	if n > l.burst {
		return false, time.Duration(math.MaxInt64)
	}
	t := int64(now.Sub(l.epoch))
	need := float64(n)

	s := &l.shards[xxhash.Sum64String(key)%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()

	b := s.lookup(key, t, l.ttl, float64(l.burst))
	b.refill(t, l.rate, float64(l.burst))
	if b.tokens+tokenEpsilon >= need {
		b.tokens = max(0, b.tokens-need)
		return true, 0
	}
	return false, secondsToDuration((need - b.tokens) / l.rate)
}

// refill adds the tokens earned since b.last, up to burst, and moves b.last to
// t. It does nothing when t is not after b.last.
func (b *bucket) refill(t int64, rate, burst float64) {
	elapsed := t - b.last
	if elapsed <= 0 {
		return
	}
	b.tokens = min(burst, b.tokens+float64(elapsed)*rate/1e9)
	b.last = t
}

// lookup returns key's bucket, marking it most recently used. A key seen for
// the first time gets a full bucket; inserting it first forgets keys idle
// longer than ttl and, if the shard is still full, the least recently used
// key. s.mu must be held.
func (s *shard) lookup(key string, t, ttl int64, burst float64) *bucket {
	if b, ok := s.buckets[key]; ok {
		s.unlink(b)
		s.pushFront(b)
		return b
	}
	for old := s.root.prev; old != &s.root && t-old.last > ttl; old = s.root.prev {
		s.remove(old)
	}
	if len(s.buckets) >= s.capacity {
		s.remove(s.root.prev)
	}
	// Clone the key so the map does not pin a larger string (such as a whole
	// header value) that the caller sliced it from.
	b := &bucket{key: strings.Clone(key), tokens: burst, last: t}
	s.buckets[b.key] = b
	s.pushFront(b)
	return b
}

// pushFront links b in as the most recently used bucket.
func (s *shard) pushFront(b *bucket) {
	b.prev = &s.root
	b.next = s.root.next
	s.root.next.prev = b
	s.root.next = b
}

// unlink takes b out of the LRU list.
func (s *shard) unlink(b *bucket) {
	b.prev.next = b.next
	b.next.prev = b.prev
	b.prev, b.next = nil, nil
}

// remove forgets b entirely.
func (s *shard) remove(b *bucket) {
	s.unlink(b)
	delete(s.buckets, b.key)
}

// secondsToDuration converts seconds to a Duration, rounding up to a whole
// nanosecond (at least one) and saturating instead of overflowing.
func secondsToDuration(sec float64) time.Duration {
	ns := math.Ceil(sec * 1e9)
	switch {
	case ns < 1:
		return 1
	case ns >= math.MaxInt64:
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ns)
}
