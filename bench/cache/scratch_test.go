package main

import (
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"hash/maphash"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
)

const capN = 100_000

func zipfKeys(n int) []uint64 {
	r := rand.New(rand.NewSource(1))
	z := rand.NewZipf(r, 1.01, 1, 1<<20)
	ks := make([]uint64, n)
	for i := range ks {
		ks[i] = z.Uint64()
	}
	return ks
}

var keys = zipfKeys(1 << 20)

type iface interface {
	Get(uint64) bool
	Set(uint64)
}

type ot struct{ c *otter.Cache[uint64, uint64] }

func (o ot) Get(k uint64) bool { _, ok := o.c.GetIfPresent(k); return ok }
func (o ot) Set(k uint64)      { o.c.Set(k, k) }

type ri struct{ c *ristretto.Cache[uint64, uint64] }

func (o ri) Get(k uint64) bool { _, ok := o.c.Get(k); return ok }
func (o ri) Set(k uint64)      { o.c.Set(k, k, 1) }

type shard struct {
	mu sync.Mutex
	m  map[uint64]uint64
	_ [40]byte
}
type sm struct{ s []shard; seed maphash.Seed }

func (o *sm) sh(k uint64) *shard { return &o.s[maphash.Comparable(o.seed, k)&uint64(len(o.s)-1)] }
func (o *sm) Get(k uint64) bool { s := o.sh(k); s.mu.Lock(); _, ok := s.m[k]; s.mu.Unlock(); return ok }
func (o *sm) Set(k uint64)      { s := o.sh(k); s.mu.Lock(); s.m[k] = k; s.mu.Unlock() }

func run(b *testing.B, c iface, readPct int) {
	for _, k := range keys[:capN*2] {
		c.Set(k)
	}
	var ctr atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(ctr.Add(1) * 7919 * 31)
		for pb.Next() {
			k := keys[i&(len(keys)-1)]
			if i%100 < readPct {
				c.Get(k)
			} else {
				c.Set(k)
			}
			i++
		}
	})
}

func BenchmarkScratch(b *testing.B) {
	for _, rp := range []int{90, 50} {
		b.Run("otter/r"+itoa(rp), func(b *testing.B) {
			run(b, ot{otter.Must(&otter.Options[uint64, uint64]{MaximumSize: capN})}, rp)
		})
		b.Run("ristretto/r"+itoa(rp), func(b *testing.B) {
			c, _ := ristretto.NewCache(&ristretto.Config[uint64, uint64]{NumCounters: capN * 10, MaxCost: capN, BufferItems: 64})
			run(b, ri{c}, rp)
		})
		b.Run("shardmap/r"+itoa(rp), func(b *testing.B) {
			s := &sm{s: make([]shard, 64), seed: maphash.MakeSeed()}
			for i := range s.s { s.s[i].m = map[uint64]uint64{} }
			run(b, s, rp)
		})
	}
}
func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }
