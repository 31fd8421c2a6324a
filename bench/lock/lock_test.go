// Package lockbench compares Blueprint's lock backends with raw etcd
// concurrency.Mutex on the same etcd, in one run:
//
//	go test -run '^$' -bench . -benchtime 3s -count 3 ./bench/lock
//
// It needs Debian's etcd-server (/usr/bin/etcd) and PostgreSQL (initdb, pg_ctl).
package lockbench

import (
	"context"
	"github.com/blueprint-media/blueprint/internal/testenv"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// startEtcd starts a throwaway etcd (internal/testenv) and returns a
// client; both are stopped when the benchmark ends.
func startEtcd(b *testing.B) *clientv3.Client {
	b.Helper()
	return testenv.EtcdClient(b, testenv.StartEtcd(b))
}

// latencies collects acquire latencies and reports p50/p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), "p50-acquire-µs")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-acquire-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "locks/s")
}

// lockUnlock is one acquire+release cycle of the system under test.
type lockUnlock func(ctx context.Context) (acquire time.Duration, err error)

// run measures lock/unlock cycles: uncontended (one client) and contended
// (4 clients on one lock name), each client made by newClient.
func run(b *testing.B, newClient func(b *testing.B) lockUnlock) {
	ctx := context.Background()
	b.Run("uncontended", func(b *testing.B) {
		c := newClient(b)
		var lat latencies
		b.ResetTimer()
		for range b.N {
			d, err := c(ctx)
			if err != nil {
				b.Fatal(err)
			}
			lat.add(d)
		}
		b.StopTimer()
		lat.report(b)
	})
	b.Run("contended-4", func(b *testing.B) {
		var lat latencies
		clients := make(chan lockUnlock, 8)
		for range 8 {
			clients <- newClient(b)
		}
		b.SetParallelism(2) // 4 clients on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c := <-clients
			for pb.Next() {
				d, err := c(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				lat.add(d)
			}
		})
		b.StopTimer()
		lat.report(b)
	})
}

func BenchmarkLock(b *testing.B) {
	cli := startEtcd(b)
	b.Run("etcd-raw-mutex", func(b *testing.B) {
		run(b, func(b *testing.B) lockUnlock {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			m := concurrency.NewMutex(s, "/bench/raw/"+b.Name())
			return func(ctx context.Context) (time.Duration, error) {
				start := time.Now()
				if err := m.Lock(ctx); err != nil {
					return 0, err
				}
				d := time.Since(start)
				return d, m.Unlock(ctx)
			}
		})
	})
	b.Run("etcd-blueprint", func(b *testing.B) {
		run(b, func(b *testing.B) lockUnlock {
			l := lock.NewEtcd(cli, "/bench/ours/", lock.Options{TTL: 10 * time.Second})
			b.Cleanup(func() { l.Close() })
			name := b.Name()
			return func(ctx context.Context) (time.Duration, error) {
				start := time.Now()
				lease, err := l.Lock(ctx, name)
				if err != nil {
					return 0, err
				}
				d := time.Since(start)
				return d, lease.Unlock(ctx)
			}
		})
	})
	// Raw and ours alternate op by op, so drift in etcd's fsync latency
	// (other work on the box, database growth) hits both equally.
	b.Run("etcd-interleaved/uncontended", func(b *testing.B) {
		ctx := context.Background()
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		m := concurrency.NewMutex(s, "/bench/inter-raw")
		l := lock.NewEtcd(cli, "/bench/inter-ours/", lock.Options{TTL: 10 * time.Second})
		defer l.Close()
		var raw, ours time.Duration
		b.ResetTimer()
		for i := range b.N {
			rawOp := func() {
				start := time.Now()
				if err := m.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := m.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
				raw += time.Since(start)
			}
			oursOp := func() {
				start := time.Now()
				lease, err := l.Lock(ctx, "x")
				if err != nil {
					b.Fatal(err)
				}
				if err := lease.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
				ours += time.Since(start)
			}
			if i%2 == 0 {
				rawOp()
				oursOp()
			} else {
				oursOp()
				rawOp()
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/raw.Seconds(), "raw-locks/s")
		b.ReportMetric(float64(b.N)/ours.Seconds(), "ours-locks/s")
		b.ReportMetric(raw.Seconds()/ours.Seconds(), "ours/raw")
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := startPostgres(b)
		run(b, func(b *testing.B) lockUnlock {
			l, err := lock.NewPostgres(context.Background(), dsn, lock.Options{TTL: 10 * time.Second, MaxPoll: 5 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			name := b.Name()
			return func(ctx context.Context) (time.Duration, error) {
				start := time.Now()
				lease, err := l.Lock(ctx, name)
				if err != nil {
					return 0, err
				}
				d := time.Since(start)
				return d, lease.Unlock(ctx)
			}
		})
	})
	b.Run("embedded-sqlite", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "bench.db")
		run(b, func(b *testing.B) lockUnlock {
			db, err := sqlstore.Open(context.Background(), path)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			l, err := lock.NewSQLite(context.Background(), db, lock.Options{TTL: 10 * time.Second, MaxPoll: 5 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			name := b.Name()
			return func(ctx context.Context) (time.Duration, error) {
				start := time.Now()
				lease, err := l.Lock(ctx, name)
				if err != nil {
					return 0, err
				}
				d := time.Since(start)
				return d, lease.Unlock(ctx)
			}
		})
	})
}
