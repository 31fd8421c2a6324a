package main

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"

	"github.com/blueprint-media/blueprint/internal/cache"
)

// Throughput benchmark parameters: a cache of benchCapacity entries, keys
// drawn from a Zipf distribution (s = 1.01) over benchKeySpace keys, and a
// fixed sequence of benchKeys draws that every goroutine walks from its own
// offset, so the key generator costs nothing inside the timed loop.
const (
	benchCapacity = 100_000
	benchKeySpace = 1 << 20
	benchKeys     = 1 << 21
)

// zipfKeys returns the fixed key sequence.
func zipfKeys() []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.01, 1, benchKeySpace-1)
	keys := make([]uint64, benchKeys)
	for i := range keys {
		keys[i] = z.Uint64()
	}
	return keys
}

// benchCache is the common face of the three caches.
type benchCache interface {
	get(k uint64) bool
	set(k uint64)
}

type oursCache struct{ c *cache.Cache[uint64, uint64] }

func (o oursCache) get(k uint64) bool { _, ok := o.c.Get(k); return ok }
func (o oursCache) set(k uint64)      { o.c.Set(k, k, 1) }

type otterCache struct{ c *otter.Cache[uint64, uint64] }

func (o otterCache) get(k uint64) bool { _, ok := o.c.GetIfPresent(k); return ok }
func (o otterCache) set(k uint64)      { o.c.Set(k, k) }

type ristrettoCache struct {
	c *ristretto.Cache[uint64, uint64]
}

func (r ristrettoCache) get(k uint64) bool { _, ok := r.c.Get(k); return ok }
func (r ristrettoCache) set(k uint64)      { r.c.Set(k, k, 1) }

// cpuTime returns the CPU time (user + system) the process has used, in
// nanoseconds: all its threads, so the peers' background goroutines and the
// garbage collector count. Unlike wall time it barely depends on what else
// runs on the machine.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// contestants builds each cache at benchCapacity entries, inside the
// benchmark so that ours picks its shard count for the -cpu value in force.
// ours_async is ours after Start: its maintenance goroutine, not Get,
// gives hits to the policy (lossy when it lags), as otter's does.
// Ristretto is configured as its README recommends (10× counters, 64-item
// buffers, cost 1 with IgnoreInternalCost); its Sets stay asynchronous and
// may be dropped under load, which is its design. Otter uses its defaults
// (maintenance on a background goroutine).
func contestants() []struct {
	name string
	make func(b *testing.B) (benchCache, func())
} {
	return []struct {
		name string
		make func(b *testing.B) (benchCache, func())
	}{
		{"ours", func(b *testing.B) (benchCache, func()) {
			c, err := cache.New(cache.Config[uint64, uint64]{MaxEntries: benchCapacity})
			if err != nil {
				b.Fatal(err)
			}
			return oursCache{c}, func() {}
		}},
		{"ours_async", func(b *testing.B) (benchCache, func()) {
			c, err := cache.New(cache.Config[uint64, uint64]{MaxEntries: benchCapacity, AsyncReads: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Start(b.Context()); err != nil {
				b.Fatal(err)
			}
			return oursCache{c}, func() { c.Stop(context.Background()) }
		}},
		{"otter", func(b *testing.B) (benchCache, func()) {
			c := otter.Must(&otter.Options[uint64, uint64]{MaximumSize: benchCapacity})
			return otterCache{c}, func() { c.StopAllGoroutines() }
		}},
		{"ristretto", func(b *testing.B) (benchCache, func()) {
			c, err := ristretto.NewCache(&ristretto.Config[uint64, uint64]{
				NumCounters: benchCapacity * 10, MaxCost: benchCapacity, BufferItems: 64, IgnoreInternalCost: true,
			})
			if err != nil {
				b.Fatal(err)
			}
			return ristrettoCache{c}, c.Close
		}},
	}
}

// BenchmarkThroughput measures operations per second (wall clock) and CPU
// time per operation of ours, otter and ristretto side by side, for read
// shares of 100, 90, 75 (the share of the throughput goal) and 50 % (the
// rest are Sets), with as many goroutines as GOMAXPROCS (use -cpu 1,2). Each
// cache is filled first by Setting the keys of the sequence until it has
// seen three times its capacity.
//
//	go test ./bench/cache -run '^$' -bench Throughput -cpu 1,2 -count 5
func BenchmarkThroughput(b *testing.B) {
	keys := zipfKeys()
	for _, reads := range benchReadShares() {
		for _, c := range contestants() {
			b.Run("reads="+strconv.Itoa(reads)+"/"+c.name, func(b *testing.B) {
				bc, done := c.make(b)
				defer done()
				for _, k := range keys[:3*benchCapacity] {
					bc.set(k)
				}
				var (
					start atomic.Uint64
					hits  atomic.Uint64
				)
				b.ReportAllocs()
				cpu0 := cpuTime()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					// Goroutines start far apart in the sequence.
					i := int(start.Add(1) * 0x9e37_79b9 % benchKeys)
					h := uint64(0)
					for pb.Next() {
						k := keys[i&(benchKeys-1)]
						if i%100 < reads {
							if bc.get(k) {
								h++
							}
						} else {
							bc.set(k)
						}
						i++
					}
					hits.Add(h)
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// benchReadShares returns the read shares to run: 100, 90, 75 and 50 %, or the
// single share in BENCH_READS (a profiling aid).
func benchReadShares() []int {
	if s := os.Getenv("BENCH_READS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return []int{n}
		}
	}
	return []int{100, 90, 75, 50}
}
