package idgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testClock is the wall clock shifted by an offset the test moves.
type testClock struct {
	wall0 int64 // wall-clock time of the generator's base, Unix ns
	off   atomic.Int64
}

func (c *testClock) unixNano(mono time.Duration) int64 {
	return c.wall0 + int64(mono) + c.off.Load()
}

func (c *testClock) shift(d time.Duration) { c.off.Add(int64(d)) }

// newTestGen returns an unstarted generator on a testClock.
func newTestGen(t testing.TB, cfg Config) (*Generator, *testClock) {
	t.Helper()
	clk := &testClock{}
	g, err := newGenerator(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	clk.wall0 = g.base.UnixNano()
	return g, clk
}

// startTestGen returns a started generator that is stopped at cleanup.
func startTestGen(t testing.TB, cfg Config) (*Generator, *testClock) {
	t.Helper()
	g, clk := newTestGen(t, cfg)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Stop(context.Background()) })
	return g, clk
}

// memLeaser is an in-memory Leaser with a fixed number of worker IDs. The
// test can revoke a lease: the worker ID is free at once, and the holder is
// told at once or only later (as when it is partitioned from etcd).
type memLeaser struct {
	mu      sync.Mutex
	slots   int
	held    map[int]*memLease
	marks   map[int]int64
	handoff map[int]int // worker ID → the only acquirer that may take it
	// lie makes leases report no mark and store none: the control that
	// shows what the high-water mark prevents.
	lie bool
}

func newMemLeaser(slots int) *memLeaser {
	return &memLeaser{slots: slots, held: map[int]*memLease{}, marks: map[int]int64{}, handoff: map[int]int{}}
}

// Acquire leases a random free worker ID to an anonymous acquirer.
func (m *memLeaser) Acquire(ctx context.Context) (Lease, error) { return m.acquire(-1) }

// as returns a Leaser that acquires as who, for handoffs.
func (m *memLeaser) as(who int) Leaser { return memView{m, who} }

type memView struct {
	m   *memLeaser
	who int
}

func (v memView) Acquire(ctx context.Context) (Lease, error) { return v.m.acquire(v.who) }

func (m *memLeaser) acquire(who int) (Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A worker ID handed off to who comes first; otherwise a random free
	// one, so that worker IDs move between generators.
	order := rand.Perm(m.slots)
	for n, to := range m.handoff {
		if to == who {
			order = append([]int{n}, order...)
		}
	}
	for _, n := range order {
		if to, ok := m.handoff[n]; ok && to != who {
			continue
		}
		if m.held[n] == nil {
			for w, to := range m.handoff {
				if to == who || w == n {
					delete(m.handoff, w) // who is served
				}
			}
			l := &memLease{m: m, id: n, mark: m.marks[n], lost: make(chan struct{})}
			if m.lie {
				l.mark = 0
			}
			l.exp.Store(&time.Time{})
			m.held[n] = l
			return l, nil
		}
	}
	return nil, ErrNoFreeWorker
}

func (m *memLeaser) mark(n int) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.marks[n]
}

func (m *memLeaser) holder(n int) *memLease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[n]
}

// revoke frees l's worker ID now and closes its Lost channel after notify.
func (m *memLeaser) revoke(l *memLease, notify time.Duration) {
	m.mu.Lock()
	if m.held[l.id] == l {
		delete(m.held, l.id)
	}
	m.mu.Unlock()
	if notify == 0 {
		l.lose()
		return
	}
	time.AfterFunc(notify, l.lose)
}

type memLease struct {
	m    *memLeaser
	id   int
	mark int64
	lost chan struct{}
	once sync.Once
	exp  atomic.Pointer[time.Time]
}

func (l *memLease) ID() int               { return l.id }
func (l *memLease) HighWater() int64      { return l.mark }
func (l *memLease) Lost() <-chan struct{} { return l.lost }
func (l *memLease) Expires() time.Time    { return *l.exp.Load() }
func (l *memLease) lose()                 { l.once.Do(func() { close(l.lost) }) }

func (l *memLease) SetHighWater(_ context.Context, ms int64) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.held[l.id] != l {
		l.lose()
		return ErrLeaseLost
	}
	if !l.m.lie {
		l.m.marks[l.id] = ms
	}
	return nil
}

func (l *memLease) Release(_ context.Context, ms int64) error {
	l.m.mu.Lock()
	if l.m.held[l.id] == l {
		if !l.m.lie {
			l.m.marks[l.id] = ms
		}
		delete(l.m.held, l.id)
	}
	l.m.mu.Unlock()
	l.lose()
	return nil
}

// next issues one ID or fails the test.
func next(t testing.TB, g *Generator, shard int) int64 {
	t.Helper()
	id, err := g.Next(shard)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// unixMs is the time of an ID in milliseconds since the Unix epoch.
func unixMs(id int64) int64 { return id>>timeShift + EpochUnixMilli }

// value reads a collector's single counter or gauge sample.
func value(c prometheus.Collector) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		panic(fmt.Sprintf("gather: %v", err))
	}
	m := mfs[0].GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isNoLease(err error) bool { return errors.Is(err, ErrNoLease) }
