// Package idgenbench measures Blueprint's ID generator next to its peers in
// one run: bwmarrin/snowflake v0.3.0, sony/sonyflake v1.2.0 and
// google/uuid v1.6.0 NewV7. Run it with
//
//	go test -run '^$' -bench . -cpu 1,2 ./bench/idgen
//
// or bench/idgen/run.sh for medians and ratios. Every sub-benchmark shares
// one generator between b.RunParallel's goroutines (one per GOMAXPROCS), so
// -cpu 1 is a single caller and -cpu 2 two callers contending for it.
// Each reports IDs/s and, where the peer's layout has a limit per
// generator, IDs/s as a share of that limit ("limit-share").
package idgenbench

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/bwmarrin/snowflake"
	"github.com/google/uuid"
	"github.com/sony/sonyflake"

	"github.com/blueprint-media/blueprint/internal/idgen"
)

// Layout limits per generator, IDs per second.
var (
	oursOneShard  = float64(idgen.DefaultLayout().MaxPerSecond())          // 32 per ms on one shard
	oursAllShards = float64(idgen.DefaultLayout().MaxPerSecondAllShards()) // 32 per ms on each of 4096 shards
)

const (
	bwmarrinLimit  = 4096 * 1000 // 12-bit step per ms
	sonyflakeLimit = 256 * 100   // 8-bit sequence per 10ms
)

func report(b *testing.B, ids int, limit float64) {
	perSec := float64(ids) / b.Elapsed().Seconds()
	b.ReportMetric(perSec, "IDs/s")
	if limit > 0 {
		b.ReportMetric(perSec/limit, "limit-share")
	}
}

// generator starts one of our generators on a file lease in a temp dir.
func generator(b *testing.B) *idgen.Generator {
	b.Helper()
	g, err := idgen.New(idgen.Config{Leaser: idgen.NewFileLeaser(b.TempDir())})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Stop(context.Background()) })
	return g
}

func BenchmarkIDs(b *testing.B) {
	// Ours, every call on one shard: bounded by the layout (32 per ms).
	b.Run("ours-1shard", func(b *testing.B) {
		g := generator(b)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := g.Next(5); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, b.N, oursOneShard)
	})
	// Ours, calls spread round-robin over the 4096 shards: bounded by CPU.
	b.Run("ours-spread", func(b *testing.B) {
		g := generator(b)
		var start atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			shard := int(start.Add(1000))
			for pb.Next() {
				shard++
				if _, err := g.Next(shard & idgen.MaxShard); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, b.N, oursAllShards)
	})
	// Ours, NextN batches of 32 spread over the shards; an op is one batch.
	b.Run("ours-batch32-spread", func(b *testing.B) {
		g := generator(b)
		var start atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			shard := int(start.Add(1000))
			for pb.Next() {
				shard++
				if _, err := g.NextN(shard&idgen.MaxShard, 32); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, 32*b.N, oursAllShards)
	})
	b.Run("bwmarrin", func(b *testing.B) {
		node, err := snowflake.NewNode(1)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				node.Generate()
			}
		})
		report(b, b.N, bwmarrinLimit)
	})
	b.Run("sonyflake", func(b *testing.B) {
		sf, err := sonyflake.New(sonyflake.Settings{MachineID: func() (uint16, error) { return 1, nil }})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := sf.NextID(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, b.N, sonyflakeLimit)
	})
	b.Run("uuidv7", func(b *testing.B) {
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := uuid.NewV7(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, b.N, 0)
	})
}
