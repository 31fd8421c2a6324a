package main

import (
	"context"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"

	"github.com/blueprint-media/blueprint/internal/cache"
)

// replayOtter replays keys against otter v2 bounded to size entries. Its
// maintenance (the policy's bookkeeping of reads and writes) normally runs
// on a background goroutine, which makes the result depend on scheduling;
// a synchronous Executor runs it inline, so the replay is deterministic and
// otter is never over its size when the next request arrives.
func replayOtter(keys []uint64, size int) uint64 {
	c := otter.Must(&otter.Options[uint64, uint64]{
		MaximumSize: size,
		Executor:    func(fn func()) { fn() },
	})
	var hits uint64
	for _, k := range keys {
		if _, ok := c.GetIfPresent(k); ok {
			hits++
			continue
		}
		c.Set(k, k)
	}
	c.CleanUp()
	return hits
}

// replayRistretto replays keys against ristretto v2 configured as its
// README recommends for size entries of cost 1: 10× counters, 64-item
// buffers, and IgnoreInternalCost so that an entry costs 1, not 1 plus
// ristretto's per-item overhead (which would shrink the cache ~50×).
// Sets are asynchronous in ristretto and dropped when its buffer is full;
// Wait after every Set applies each one before the next request, so no Set
// is lost to contention and only ristretto's admission policy rejects keys.
func replayRistretto(keys []uint64, size int) uint64 {
	c, err := ristretto.NewCache(&ristretto.Config[uint64, uint64]{
		NumCounters:        int64(size) * 10,
		MaxCost:            int64(size),
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var hits uint64
	for _, k := range keys {
		if _, ok := c.Get(k); ok {
			hits++
			continue
		}
		c.Set(k, k, 1)
		c.Wait()
	}
	return hits
}

// replayCacheAsync is replayCache with AsyncReads and the maintenance
// goroutine running (Start): the goroutine, not Get, gives hits to the
// policy, and drops those that arrive while it lags, so the result depends
// on scheduling: it shows what that mode costs while the replay runs at full
// speed on one core and the goroutine on the other.
func replayCacheAsync(keys []uint64, size int) uint64 {
	c, err := cache.New(cache.Config[uint64, uint64]{MaxEntries: size, AsyncReads: true})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	defer c.Stop(ctx)
	var hits uint64
	for _, k := range keys {
		if _, ok := c.Get(k); ok {
			hits++
			continue
		}
		c.Set(k, k, 1)
	}
	return hits
}

// replayCache replays keys against our concurrent Cache with its default
// policy and sharding, bounded to size entries: what the platform gets,
// including the (small) loss from splitting a large cache into shards.
func replayCache(keys []uint64, size int) uint64 {
	c, err := cache.New(cache.Config[uint64, uint64]{MaxEntries: size})
	if err != nil {
		panic(err)
	}
	var hits uint64
	for _, k := range keys {
		if _, ok := c.Get(k); ok {
			hits++
			continue
		}
		c.Set(k, k, 1)
	}
	return hits
}
