// Package tier puts Blueprint's caches in front of the database: an
// in-process L1 (cache.Cache) over an optional shared L2 (Redis nodes, see
// package redisl2), with the read and write strategies of blueprint
// section 5.
//
// Reads are cache-aside: L1, then L2, then the loader, whose result fills
// both. Concurrent misses of one key share one load (stampede protection,
// singleflight), and a hit close to its expiry refreshes the entry in the
// background with probability rising as expiry nears (XFetch, Vattani et
// al., "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015), so a
// hot key never expires under its readers. A loader's "not found" is
// cached for NegativeTTL (negative caching), so a flood of lookups of a
// missing key does not reach the database.
//
// Writes take one of three strategies:
//
//   - WriteThrough saves to the database, then stores the new value in L2
//     and L1: the next read is a hit.
//   - WriteAround saves to the database and deletes the key from L2 and L1:
//     the next read loads it. For data written more than read, and the
//     safe choice when concurrent writers race (no stale value can be
//     written back over a newer one by a slow writer).
//   - WriteBack stores the value in L1 and L2 at once and saves it to the
//     database later, in batches, from a bounded set of dirty keys; Stop
//     flushes it. Durability trade-off: a write acknowledged to the caller
//     is lost if the process dies before the flush (at most FlushInterval
//     of writes, at most MaxDirty keys). Use it only for data whose loss is
//     tolerable — view counters, last-seen times — never for money or
//     content.
//
// Every write and Delete tells the other processes' L1s to drop the key
// through the Invalidator (NATS core subjects), so a process never serves
// its own stale copy of a value another process changed for longer than
// the message takes; the L1 TTL bounds the staleness if a message is lost.
package tier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/blueprint-media/blueprint/internal/cache"
)

// ErrNotFound is what a Loader returns (wrapped or not) for a key that
// does not exist; Get returns it too, from the negative cache or the
// loader.
var ErrNotFound = errors.New("tier: not found")

// Remote is the shared L2: bytes under string keys with a TTL.
type Remote interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, keys ...string) error
}

// Invalidator broadcasts keys to drop from every process's L1.
type Invalidator interface {
	// Publish tells the other subscribers of cache name to drop key.
	Publish(ctx context.Context, name, key string) error
	// Subscribe calls drop for each key published for name by others.
	Subscribe(name string, drop func(key string)) (stop func(), err error)
}

// Config configures a Tier.
type Config[V any] struct {
	Name string // metrics label and invalidation channel

	// L1 bounds: entries, and bytes as estimated by Weigher (nil: cost 1).
	L1Entries int
	L1Bytes   int64
	Weigher   func(key string, v V) int64

	TTL         time.Duration // freshness of a loaded or written value
	NegativeTTL time.Duration // how long "not found" is cached; 0: not cached
	// Beta scales XFetch's early refresh (1 is the paper's optimum, larger
	// refreshes earlier); 0 disables it.
	Beta float64
	// Uniform returns XFetch's random draw in [0, 1); nil: math/rand/v2.
	// Tests set it to make the early refresh deterministic.
	Uniform func() float64

	Load  func(ctx context.Context, key string) (V, error)    // source of truth; ErrNotFound
	Save  func(ctx context.Context, key string, v V) error    // for the write strategies
	Flush func(ctx context.Context, batch map[string]V) error // WriteBack batches; nil: Save per key

	Remote      Remote      // optional L2
	Invalidator Invalidator // optional cross-process L1 invalidation

	// WriteBack bounds.
	MaxDirty      int           // dirty keys held before a write flushes synchronously (default 10,000)
	FlushInterval time.Duration // default 1s

	LoadTimeout time.Duration // bound on a shared load (default 10s)
	Logger      *slog.Logger
	Now         func() time.Time // tests
}

// item is a cached value or a cached "not found", with the expiry and the
// time its load took (XFetch's delta). It is also the L2 encoding.
type item[V any] struct {
	V       V     `json:"v"`
	Missing bool  `json:"m,omitempty"`
	Expires int64 `json:"e"` // unix ms
	Delta   int64 `json:"d"` // load time, µs
}

// Tier is one named cache over the database.
type Tier[V any] struct {
	cfg  Config[V]
	l1   *cache.Cache[string, *item[V]]
	sf   singleflight.Group
	stop func()

	dirtyMu sync.Mutex
	dirty   map[string]V
	flushMu sync.Mutex // one flush at a time

	cancel context.CancelFunc
	wg     sync.WaitGroup

	loads, refreshes, l2Hits, l2Errors, invalidations atomic.Uint64
}

// New returns a Tier; Start runs its background work (invalidation
// subscription, L1 sweeping, write-back flushing).
func New[V any](cfg Config[V]) (*Tier[V], error) {
	if cfg.Name == "" || cfg.Load == nil {
		return nil, errors.New("tier: Name and Load are required")
	}
	if cfg.TTL <= 0 {
		return nil, fmt.Errorf("tier %s: TTL must be positive", cfg.Name)
	}
	if cfg.L1Entries == 0 && cfg.L1Bytes == 0 {
		cfg.L1Entries = 10_000
	}
	if cfg.MaxDirty <= 0 {
		cfg.MaxDirty = 10_000
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l1cfg := cache.Config[string, *item[V]]{MaxEntries: cfg.L1Entries, MaxBytes: cfg.L1Bytes, Now: cfg.Now}
	if w := cfg.Weigher; w != nil {
		l1cfg.Weigher = func(k string, it *item[V]) int64 { return w(k, it.V) }
	}
	l1, err := cache.New(l1cfg)
	if err != nil {
		return nil, fmt.Errorf("tier %s: %w", cfg.Name, err)
	}
	return &Tier[V]{cfg: cfg, l1: l1, dirty: map[string]V{}}, nil
}

// L1 returns the in-process cache (for its Stats and metrics).
func (t *Tier[V]) L1() *cache.Cache[string, *item[V]] { return t.l1 }

// Name returns the tier's name.
func (t *Tier[V]) Name() string { return t.cfg.Name }

// Start subscribes to invalidations and starts the L1 sweeper and the
// write-back flusher.
func (t *Tier[V]) Start(ctx context.Context) error {
	if t.cfg.Invalidator != nil {
		stop, err := t.cfg.Invalidator.Subscribe(t.cfg.Name, func(key string) {
			t.l1.Delete(key)
			t.invalidations.Add(1)
		})
		if err != nil {
			return fmt.Errorf("tier %s: invalidation subscription: %w", t.cfg.Name, err)
		}
		t.stop = stop
	}
	if err := t.l1.Start(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.wg.Go(func() {
		tick := time.NewTicker(t.cfg.FlushInterval)
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
				if err := t.FlushDirty(runCtx); err != nil && runCtx.Err() == nil {
					t.cfg.Logger.Warn("cache write-back flush failed; will retry", "cache", t.cfg.Name, "err", err)
				}
			}
		}
	})
	return nil
}

// Stop flushes the write-back buffer and stops the background work.
func (t *Tier[V]) Stop(ctx context.Context) error {
	if t.cancel != nil {
		t.cancel()
		t.wg.Wait()
	}
	if t.stop != nil {
		t.stop()
	}
	err := t.FlushDirty(ctx)
	return errors.Join(err, t.l1.Stop(ctx))
}

func (t *Tier[V]) now() time.Time { return t.cfg.Now() }

// Get returns the value of key: from L1, L2 or the loader (cache-aside).
func (t *Tier[V]) Get(ctx context.Context, key string) (V, error) {
	if it, ok := t.l1.Get(key); ok {
		now := t.now().UnixMilli()
		if now < it.Expires {
			if t.cfg.Beta > 0 && !it.Missing && t.early(it, now) {
				t.refresh(key)
			}
			return it.value()
		}
	}
	v, err, _ := t.sf.Do(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.LoadTimeout)
		defer cancel()
		return t.fill(ctx, key, true)
	})
	if err != nil {
		var zero V
		return zero, err
	}
	return v.(*item[V]).value()
}

func (it *item[V]) value() (V, error) {
	if it.Missing {
		var zero V
		return zero, ErrNotFound
	}
	return it.V, nil
}

// early is XFetch: refresh now if now − δ·β·ln(U) ≥ expiry, U uniform in
// (0, 1]. The longer a load takes (δ), the earlier hot keys refresh.
func (t *Tier[V]) early(it *item[V], nowMs int64) bool {
	draw := rand.Float64
	if t.cfg.Uniform != nil {
		draw = t.cfg.Uniform
	}
	u := 1 - draw() // (0, 1]
	gap := float64(it.Delta) / 1000 * t.cfg.Beta * -math.Log(u)
	return float64(nowMs)+gap >= float64(it.Expires)
}

// refresh reloads key in the background, once however many readers ask.
func (t *Tier[V]) refresh(key string) {
	go t.sf.Do("refresh\x00"+key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.LoadTimeout)
		defer cancel()
		t.refreshes.Add(1)
		return t.fill(ctx, key, false)
	})
}

// fill loads key from L2 (when useL2) or the source and stores it.
func (t *Tier[V]) fill(ctx context.Context, key string, useL2 bool) (*item[V], error) {
	if useL2 && t.cfg.Remote != nil {
		b, ok, err := t.cfg.Remote.Get(ctx, t.remoteKey(key))
		if err != nil {
			t.l2Errors.Add(1)
		} else if ok {
			var it item[V]
			if json.Unmarshal(b, &it) == nil && t.now().UnixMilli() < it.Expires {
				t.l2Hits.Add(1)
				t.storeL1(key, &it)
				return &it, nil
			}
		}
	}
	start := t.now()
	v, err := t.cfg.Load(ctx, key)
	t.loads.Add(1)
	delta := t.now().Sub(start)
	it := &item[V]{V: v, Delta: delta.Microseconds()}
	switch {
	case errors.Is(err, ErrNotFound):
		if t.cfg.NegativeTTL <= 0 {
			return nil, err
		}
		var zero V
		it.V, it.Missing, it.Expires = zero, true, t.now().Add(t.cfg.NegativeTTL).UnixMilli()
	case err != nil:
		return nil, err
	default:
		it.Expires = t.now().Add(t.cfg.TTL).UnixMilli()
	}
	t.store(ctx, key, it)
	return it, nil
}

func (t *Tier[V]) remoteKey(key string) string { return t.cfg.Name + ":" + key }

func (t *Tier[V]) storeL1(key string, it *item[V]) {
	if ttl := time.UnixMilli(it.Expires).Sub(t.now()); ttl > 0 {
		t.l1.SetWithTTL(key, it, 0, ttl)
	}
}

// store puts it in L2 and L1.
func (t *Tier[V]) store(ctx context.Context, key string, it *item[V]) {
	if t.cfg.Remote != nil {
		if b, err := json.Marshal(it); err == nil {
			ttl := time.UnixMilli(it.Expires).Sub(t.now())
			if err := t.cfg.Remote.Set(ctx, t.remoteKey(key), b, ttl); err != nil {
				t.l2Errors.Add(1)
			}
		}
	}
	t.storeL1(key, it)
}

// drop removes key from L2 and this L1 and tells the other L1s.
func (t *Tier[V]) drop(ctx context.Context, key string) error {
	var err error
	if t.cfg.Remote != nil {
		if err = t.cfg.Remote.Delete(ctx, t.remoteKey(key)); err != nil {
			t.l2Errors.Add(1)
		}
	}
	t.l1.Delete(key)
	return errors.Join(err, t.publish(ctx, key))
}

func (t *Tier[V]) publish(ctx context.Context, key string) error {
	if t.cfg.Invalidator == nil {
		return nil
	}
	return t.cfg.Invalidator.Publish(ctx, t.cfg.Name, key)
}

// Delete invalidates key everywhere: L2, this L1 and the other L1s. Call
// it after changing the source of truth by other means.
func (t *Tier[V]) Delete(ctx context.Context, key string) error {
	t.dirtyMu.Lock()
	delete(t.dirty, key)
	t.dirtyMu.Unlock()
	return t.drop(ctx, key)
}

// WriteThrough saves v, then caches it in L2 and L1 and drops it from the
// other L1s.
func (t *Tier[V]) WriteThrough(ctx context.Context, key string, v V) error {
	if t.cfg.Save == nil {
		return fmt.Errorf("tier %s: no Save for writes", t.cfg.Name)
	}
	if err := t.cfg.Save(ctx, key, v); err != nil {
		return err
	}
	t.store(ctx, key, &item[V]{V: v, Expires: t.now().Add(t.cfg.TTL).UnixMilli()})
	return t.publish(ctx, key)
}

// WriteAround saves v and invalidates the key everywhere; the next read
// loads it.
func (t *Tier[V]) WriteAround(ctx context.Context, key string, v V) error {
	if t.cfg.Save == nil {
		return fmt.Errorf("tier %s: no Save for writes", t.cfg.Name)
	}
	if err := t.cfg.Save(ctx, key, v); err != nil {
		return err
	}
	return t.drop(ctx, key)
}

// WriteBack caches v now and saves it later (see the package comment for
// the durability trade-off). When MaxDirty keys are already waiting, the
// write flushes them first: the buffer is bounded, and a slow database
// slows writers rather than growing memory.
func (t *Tier[V]) WriteBack(ctx context.Context, key string, v V) error {
	t.dirtyMu.Lock()
	_, known := t.dirty[key]
	full := !known && len(t.dirty) >= t.cfg.MaxDirty
	t.dirtyMu.Unlock()
	if full {
		if err := t.FlushDirty(ctx); err != nil {
			return err
		}
	}
	t.dirtyMu.Lock()
	t.dirty[key] = v
	t.dirtyMu.Unlock()
	t.store(ctx, key, &item[V]{V: v, Expires: t.now().Add(t.cfg.TTL).UnixMilli()})
	return t.publish(ctx, key)
}

// Dirty returns the number of written-back keys not yet saved.
func (t *Tier[V]) Dirty() int {
	t.dirtyMu.Lock()
	defer t.dirtyMu.Unlock()
	return len(t.dirty)
}

// FlushDirty saves the written-back keys. On failure they stay dirty,
// unless a newer write replaced them meanwhile.
func (t *Tier[V]) FlushDirty(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.dirtyMu.Lock()
	batch := t.dirty
	t.dirty = map[string]V{}
	t.dirtyMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	var err error
	if t.cfg.Flush != nil {
		err = t.cfg.Flush(ctx, batch)
	} else if t.cfg.Save != nil {
		for k, v := range batch {
			if err = t.cfg.Save(ctx, k, v); err != nil {
				break
			}
			delete(batch, k)
		}
	} else {
		err = fmt.Errorf("tier %s: no Save or Flush for write-back", t.cfg.Name)
	}
	if err != nil {
		t.dirtyMu.Lock()
		for k, v := range batch {
			if _, newer := t.dirty[k]; !newer {
				t.dirty[k] = v
			}
		}
		t.dirtyMu.Unlock()
		return fmt.Errorf("tier %s: flush: %w", t.cfg.Name, err)
	}
	return nil
}

// Stats are a tier's counters beyond its L1's.
type Stats struct {
	L1            cache.Stats
	Loads         uint64 // loader calls
	Refreshes     uint64 // of which early (XFetch) refreshes
	L2Hits        uint64
	L2Errors      uint64
	Invalidations uint64 // L1 drops on other processes' messages
	Dirty         int
}

// HitRatio is the share of Gets served without the loader.
func (s Stats) HitRatio() float64 {
	total := s.L1.Hits + s.L1.Misses
	if total == 0 {
		return 0
	}
	served := float64(total) - float64(s.Loads-s.Refreshes)
	return max(0, served) / float64(total)
}

// Stats returns the tier's counters.
func (t *Tier[V]) Stats() Stats {
	return Stats{
		L1: t.l1.Stats(), Loads: t.loads.Load(), Refreshes: t.refreshes.Load(), L2Hits: t.l2Hits.Load(),
		L2Errors: t.l2Errors.Load(), Invalidations: t.invalidations.Load(), Dirty: t.Dirty(),
	}
}

// Register registers the tier's metrics (its L1's and its own) on reg.
func (t *Tier[V]) Register(reg prometheus.Registerer) error {
	if err := t.l1.Register(reg, t.cfg.Name); err != nil {
		return err
	}
	labels := prometheus.Labels{"cache": t.cfg.Name}
	for _, m := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"loads_total", "Loader calls (misses of every tier, and early refreshes).", &t.loads},
		{"refreshes_total", "Early (XFetch) refreshes of hot keys.", &t.refreshes},
		{"l2_hits_total", "L1 misses served by the shared L2.", &t.l2Hits},
		{"l2_errors_total", "L2 calls that failed (served from the database instead).", &t.l2Errors},
		{"invalidations_total", "L1 entries dropped on another process's write.", &t.invalidations},
	} {
		v := m.v
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "tier", Name: m.name, Help: m.help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })); err != nil {
			return err
		}
	}
	return nil
}
