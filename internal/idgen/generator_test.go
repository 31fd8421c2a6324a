package idgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a Leaser accepted")
	}
	if _, err := New(Config{Leaser: newMemLeaser(1), Reserve: time.Millisecond}); err == nil {
		t.Fatal("Reserve 1ms accepted")
	}
	if _, err := New(Config{Leaser: newMemLeaser(1), MaxBackwards: -1}); err == nil {
		t.Fatal("negative MaxBackwards accepted")
	}
}

func TestLifecycle(t *testing.T) {
	ml := newMemLeaser(1)
	g, _ := newTestGen(t, Config{Leaser: ml})
	if _, err := g.Next(1); !isNoLease(err) || errs.KindOf(err) != errs.Unavailable {
		t.Fatalf("Next before Start: %v", err)
	}
	if g.WorkerID() != -1 {
		t.Fatalf("worker %d before Start", g.WorkerID())
	}
	ctx := context.Background()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err == nil {
		t.Fatal("second Start accepted")
	}
	if g.WorkerID() != 0 || value(g.m.worker) != 0 {
		t.Fatalf("worker %d", g.WorkerID())
	}
	var last int64
	for range 1000 {
		id := next(t, g, 5)
		if id <= last || Shard(id) != 5 || Worker(id) != 0 {
			t.Fatalf("id %d (%+v) after %d", id, must(Decode(id)), last)
		}
		last = id
	}
	if value(g.m.issued) != 1000 {
		t.Fatalf("issued = %v", value(g.m.issued))
	}
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Next(1); !isNoLease(err) {
		t.Fatalf("Next after Stop: %v", err)
	}
	if ml.holder(0) != nil {
		t.Fatal("Stop did not release the lease")
	}
	// Stop stores the exact mark: the last millisecond issued.
	if got := ml.mark(0); got != unixMs(last) {
		t.Fatalf("mark after Stop = %d, want %d", got, unixMs(last))
	}
	if err := g.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestBadInput(t *testing.T) {
	g, _ := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	for _, s := range []int{-1, MaxShard + 1} {
		if _, err := g.Next(s); !errors.Is(err, ErrBadShard) || errs.KindOf(err) != errs.Invalid {
			t.Errorf("Next(%d): %v", s, err)
		}
		if _, err := g.NextN(s, 1); !errors.Is(err, ErrBadShard) {
			t.Errorf("NextN(%d): %v", s, err)
		}
	}
	for _, n := range []int{0, -1, MaxBatch + 1} {
		if _, err := g.NextN(0, n); !errors.Is(err, ErrBadCount) {
			t.Errorf("NextN(0, %d): %v", n, err)
		}
	}
}

// TestSequenceExhaustionWaits issues far more than 32 IDs on one shard: each
// millisecond carries at most 32, and the calls wait for the next one.
func TestSequenceExhaustionWaits(t *testing.T) {
	g, _ := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	const n = 3200
	var last int64
	perMs := map[int64]int{}
	start := time.Now()
	for range n {
		id := next(t, g, 9)
		if id <= last {
			t.Fatalf("id %d after %d", id, last)
		}
		last = id
		perMs[unixMs(id)]++
	}
	for ms, c := range perMs {
		if c > MaxSequence+1 {
			t.Fatalf("%d IDs in millisecond %d", c, ms)
		}
	}
	if len(perMs) < n/(MaxSequence+1) {
		t.Fatalf("%d IDs in only %d milliseconds", n, len(perMs))
	}
	if el := time.Since(start); el < 97*time.Millisecond {
		t.Fatalf("3200 IDs on one shard in %v, faster than the layout allows", el)
	}
	// A full millisecond makes the next call wait, unless the goroutine was
	// descheduled past the millisecond anyway (CI under load), so the count
	// is at least one and at most one per millisecond boundary crossed.
	if w := value(g.m.seqWaits); w < 1 || w > float64(len(perMs)-1) {
		t.Fatalf("sequence waits = %v over %d milliseconds", w, len(perMs))
	}
	// Other shards do not wait for a busy one.
	ids, err := g.NextN(10, 32)
	if err != nil || len(ids) != 32 || unixMs(ids[0]) != unixMs(ids[31]) {
		t.Fatalf("NextN(10, 32) = %d IDs over %d..%d ms, %v", len(ids), unixMs(ids[0]), unixMs(ids[31]), err)
	}
}

func TestNextN(t *testing.T) {
	g, _ := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	first := next(t, g, 3)
	ids, err := g.NextN(3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1000 || ids[0] <= first {
		t.Fatalf("NextN: %d ids, first %d after %d", len(ids), ids[0], first)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] || Shard(ids[i]) != 3 {
			t.Fatalf("ids[%d] = %d after %d", i, ids[i], ids[i-1])
		}
	}
	if after := next(t, g, 3); after <= ids[999] {
		t.Fatalf("Next after NextN: %d <= %d", after, ids[999])
	}
}

func TestClockBackwards(t *testing.T) {
	g, clk := startTestGen(t, Config{Leaser: newMemLeaser(1), MaxBackwards: 300 * time.Millisecond})
	a := next(t, g, 1)
	// A small step back is waited out.
	clk.shift(-100 * time.Millisecond)
	t0 := time.Now()
	b := next(t, g, 1)
	if b <= a || unixMs(b) < unixMs(a) || time.Since(t0) < 95*time.Millisecond {
		t.Fatalf("small step: a=%d b=%d after %v", a, b, time.Since(t0))
	}
	if value(g.m.rollbacks) != 1 {
		t.Fatalf("rollbacks = %v", value(g.m.rollbacks))
	}
	// A large one is refused, and counted, until the clock is back.
	clk.shift(-2 * time.Second)
	for range 3 {
		if _, err := g.Next(1); !errors.Is(err, ErrClockBackwards) || errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("large step: %v", err)
		}
		if _, err := g.NextN(2, 10); !errors.Is(err, ErrClockBackwards) {
			t.Fatalf("large step, NextN: %v", err)
		}
	}
	if value(g.m.rollbacks) != 2 || value(g.m.refusals) != 6 {
		t.Fatalf("rollbacks = %v, refusals = %v", value(g.m.rollbacks), value(g.m.refusals))
	}
	clk.shift(2 * time.Second)
	if c := next(t, g, 1); c <= b {
		t.Fatalf("after the clock came back: %d <= %d", c, b)
	}
}

func TestClockRange(t *testing.T) {
	g, clk := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	clk.shift(70 * 366 * 24 * time.Hour)
	if _, err := g.Next(0); !errors.Is(err, ErrClockRange) {
		t.Fatalf("clock past 2094: %v", err)
	}
}

// TestMarkIsWrittenAhead checks that every ID carries a time at or below
// the mark stored before it was issued, and that the mark is extended
// while IDs are issued.
func TestMarkIsWrittenAhead(t *testing.T) {
	ml := newMemLeaser(1)
	g, _ := startTestGen(t, Config{Leaser: ml, Reserve: 40 * time.Millisecond})
	start := time.Now()
	for i := 0; time.Since(start) < 300*time.Millisecond; i++ {
		id := next(t, g, i&MaxShard)
		if m := ml.mark(0); unixMs(id) > m {
			t.Fatalf("id at %d ms above the stored mark %d", unixMs(id), m)
		}
	}
	if w := value(g.m.markWrites); w < 5 {
		t.Fatalf("only %v mark writes in 300ms with Reserve 40ms", w)
	}
}

// TestStartAboveMark: a generator that takes over a worker ID starts above
// the mark it finds, waiting when the mark is a little ahead of its clock
// and refusing when it is far ahead (a clock step back across a restart).
func TestStartAboveMark(t *testing.T) {
	now := time.Now().UnixMilli()
	ml := newMemLeaser(1)
	ml.marks[0] = now + 300
	g, _ := startTestGen(t, Config{Leaser: ml, MaxBackwards: 100 * time.Millisecond, Reserve: 300 * time.Millisecond})
	id := next(t, g, 0)
	if unixMs(id) <= now+300 {
		t.Fatalf("first id at %d, not above the mark %d", unixMs(id), now+300)
	}
	g.Stop(context.Background())

	ml.marks[0] = time.Now().UnixMilli() + 5000
	g2, _ := startTestGen(t, Config{Leaser: ml, MaxBackwards: 100 * time.Millisecond, Reserve: 300 * time.Millisecond})
	if _, err := g2.Next(0); !errors.Is(err, ErrClockBackwards) {
		t.Fatalf("mark 5s ahead: %v", err)
	}
	if value(g2.m.refusals) != 1 {
		t.Fatalf("refusals = %v", value(g2.m.refusals))
	}
}

// TestCrashRestart: a generator disappears without Stop (its worker ID is
// freed, its mark is the reservation); the next one, with its clock 100ms
// behind, issues only above every ID of the first.
func TestCrashRestart(t *testing.T) {
	ml := newMemLeaser(1)
	g1, _ := newTestGen(t, Config{Leaser: ml, Reserve: 200 * time.Millisecond})
	if err := g1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 20000 {
		last = next(t, g1, i%64)
	}
	g1.cancel() // the process is gone: no keeper, no release
	<-g1.done
	ml.revoke(ml.holder(0), 0)

	g2, clk := startTestGen(t, Config{Leaser: ml, Reserve: 200 * time.Millisecond})
	clk.shift(-100 * time.Millisecond)
	id := next(t, g2, 0)
	if unixMs(id) <= unixMs(last) {
		t.Fatalf("successor issued at %d ms, first generator's last at %d", unixMs(id), unixMs(last))
	}
}

// TestLeaseLoss: a lost lease stops the generator at once; it acquires a
// new worker ID and goes on above its own last ID.
func TestLeaseLoss(t *testing.T) {
	ml := newMemLeaser(2)
	g, _ := startTestGen(t, Config{Leaser: ml, RetryInterval: 10 * time.Millisecond})
	a := next(t, g, 7)
	l0 := ml.holder(g.WorkerID())
	ml.revoke(l0, 0)
	waitFor(t, 2*time.Second, "a new lease", func() bool {
		_, err := g.Next(7)
		return err == nil
	})
	b := next(t, g, 7)
	if b <= a || ml.holder(g.WorkerID()) == nil || ml.holder(g.WorkerID()) == l0 {
		t.Fatalf("after loss: %d after %d, worker %d", b, a, g.WorkerID())
	}
	if value(g.m.losses) != 1 {
		t.Fatalf("losses = %v", value(g.m.losses))
	}
}

// TestLeaseLossRefuses: between the loss and a new lease, Next refuses.
func TestLeaseLossRefuses(t *testing.T) {
	ml := newMemLeaser(1)
	g, _ := startTestGen(t, Config{Leaser: ml, RetryInterval: 10 * time.Millisecond})
	next(t, g, 0)
	squatter := &memLease{m: ml, id: 0, lost: make(chan struct{})}
	l := ml.holder(0)
	ml.mu.Lock()
	ml.held[0] = squatter // another process took the worker ID
	ml.mu.Unlock()
	l.lose()
	waitFor(t, time.Second, "the loss to be noticed", func() bool { return g.WorkerID() == -1 })
	for range 10 {
		if _, err := g.Next(0); !isNoLease(err) {
			t.Fatalf("Next without a lease: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ml.mu.Lock()
	delete(ml.held, 0)
	ml.mu.Unlock()
	waitFor(t, 2*time.Second, "a new lease", func() bool { return g.WorkerID() == 0 })
	next(t, g, 0)
}

// TestExpiredLeaseRefuses: a lease past its expiry stops the generator even
// before Lost is closed (the process resumed from a pause and its
// keepalive goroutine has not run yet), and a renewal lets it go on.
func TestExpiredLeaseRefuses(t *testing.T) {
	ml := newMemLeaser(1)
	l := &memLease{m: ml, id: 0, lost: make(chan struct{})}
	exp := time.Now().Add(80 * time.Millisecond)
	l.exp.Store(&exp)
	ml.held[0] = l
	g, _ := startTestGen(t, Config{Leaser: &preLeaser{l}})
	next(t, g, 0)
	time.Sleep(100 * time.Millisecond)
	if _, err := g.Next(0); !isNoLease(err) {
		t.Fatalf("Next on an expired lease: %v", err)
	}
	renewed := time.Now().Add(time.Hour)
	l.exp.Store(&renewed)
	next(t, g, 0)
}

// preLeaser hands out one prepared lease.
type preLeaser struct{ l *memLease }

func (p *preLeaser) Acquire(context.Context) (Lease, error) { return p.l, nil }

func TestMetricsRegister(t *testing.T) {
	g, _ := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	next(t, g, 0)
	reg := prometheus.NewRegistry()
	if err := g.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := g.Register(reg); err == nil {
		t.Fatal("second Register accepted")
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != len(g.Collectors()) {
		t.Fatalf("gathered %d families, %v", len(mfs), err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "blueprint_idgen_") {
			t.Errorf("metric %s outside blueprint_idgen_", mf.GetName())
		}
	}
}

// TestTorture runs 4 generators on a shared leaser with 6 worker IDs, each
// on its own clock (offsets from -120ms to +60ms) and each with one issuing
// goroutine, while a nemesis steps the clocks back by up to 60ms, back by 2s
// (refused) and forward again, and revokes leases (the holder told at once
// or 20ms later) so that worker IDs move between generators with different
// clocks. No ID may repeat; per generator and shard IDs increase and per
// generator time never decreases.
func TestTorture(t *testing.T) {
	perGen := 5_000_000
	if testing.Short() {
		perGen = 500_000
	}
	ids, stats := torture(t, false, perGen, 0)
	if d := dups(ids); d != 0 {
		t.Fatalf("%d duplicates in %d IDs", d, len(ids))
	}
	t.Logf("%d IDs, no duplicate; %s", len(ids), stats)
	if !testing.Short() && (stats.losses < 20 || stats.rollbacks < 50 || stats.refusals == 0 || stats.handoffs < 5) {
		t.Fatalf("nemesis too weak: %s", stats)
	}
}

// TestTortureControl runs the same with a leaser that drops the high-water
// marks: worker IDs moving to a generator with a slower clock must then
// repeat IDs, which shows the torture test can see the hazard.
func TestTortureControl(t *testing.T) {
	ids, stats := torture(t, true, 3_000_000, 3*time.Second)
	d := dups(ids)
	t.Logf("control: %d duplicates in %d IDs; %s", d, len(ids), stats)
	if d == 0 {
		t.Fatal("control run without high-water marks found no duplicate: the torture test is blind")
	}
}

type tortureStats struct {
	losses, rollbacks, refusals, moved, handoffs, seqWaits int
}

func (s tortureStats) String() string {
	return fmt.Sprintf("lease losses %d (handoffs to a slower clock %d, worker IDs used by more than one generator %d), clock rollbacks %d, refusals %d, sequence waits %d",
		s.losses, s.handoffs, s.moved, s.rollbacks, s.refusals, s.seqWaits)
}

func torture(t *testing.T, lie bool, perGen int, limit time.Duration) ([]int64, tortureStats) {
	const gens = 4
	ml := newMemLeaser(6)
	ml.lie = lie
	base := []time.Duration{0, -60 * time.Millisecond, 40 * time.Millisecond, -30 * time.Millisecond}
	type gen struct {
		g    *Generator
		clk  *testClock
		ids  []int64
		used [MaxWorker + 1]bool
	}
	var gs [gens]*gen
	for i := range gs {
		g, clk := newTestGen(t, Config{Leaser: ml.as(i), Reserve: 20 * time.Millisecond, MaxBackwards: 300 * time.Millisecond, RetryInterval: 5 * time.Millisecond})
		clk.shift(base[i])
		if err := g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Stop(context.Background()) })
		gs[i] = &gen{g: g, clk: clk, ids: make([]int64, 0, perGen)}
	}
	var (
		done     = make(chan struct{})
		wg       sync.WaitGroup
		finished atomic.Int32
		fail     = make(chan error, gens)
		handoffs atomic.Int32
		deadline = time.Now().Add(cmp.Or(limit, time.Minute))
	)
	for gi, x := range gs {
		wg.Go(func() {
			defer finished.Add(1)
			rng := rand.New(rand.NewPCG(uint64(gi), 1))
			lastByShard := make([]int64, MaxShard+1)
			var lastMs int64
			for len(x.ids) < perGen {
				if time.Now().After(deadline) {
					if limit == 0 {
						fail <- fmt.Errorf("generator %d: only %d IDs after a minute", gi, len(x.ids))
					}
					return
				}
				shard := rng.IntN(1024)
				var got []int64
				if rng.IntN(4096) == 0 {
					b, err := x.g.NextN(shard, 1+rng.IntN(64))
					if err != nil {
						time.Sleep(time.Millisecond)
						continue
					}
					got = b
				} else {
					id, err := x.g.Next(shard)
					if err != nil {
						time.Sleep(time.Millisecond)
						continue
					}
					got = []int64{id}
				}
				for _, id := range got {
					if id <= lastByShard[shard] {
						fail <- fmt.Errorf("generator %d shard %d: %d after %d", gi, shard, id, lastByShard[shard])
						return
					}
					if ms := unixMs(id); ms < lastMs {
						fail <- fmt.Errorf("generator %d: time %d after %d", gi, ms, lastMs)
						return
					} else {
						lastMs = ms
					}
					lastByShard[shard] = id
					x.used[Worker(id)] = true
				}
				x.ids = append(x.ids, got...)
			}
		})
	}
	leaseOf := func(x *gen) *memLease {
		x.g.mu.Lock()
		defer x.g.mu.Unlock()
		l, _ := x.g.lease.(*memLease)
		return l
	}
	notify := func(rng *rand.Rand) time.Duration { // told at once, or 20ms late
		return time.Duration(rng.IntN(2)) * 20 * time.Millisecond
	}
	// The nemesis.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(99, 7))
		for finished.Load() < gens {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(4+rng.IntN(10)) * time.Millisecond):
			}
			x := gs[rng.IntN(gens)]
			switch r := rng.IntN(100); {
			case r < 50: // small step back, later undone
				d := time.Duration(1+rng.IntN(30)) * time.Millisecond
				x.clk.shift(-d)
				time.AfterFunc(time.Duration(rng.IntN(30))*time.Millisecond, func() { x.clk.shift(d) })
			case r < 53: // large step back, refused until undone
				x.clk.shift(-2 * time.Second)
				time.Sleep(5 * time.Millisecond)
				x.clk.shift(2 * time.Second)
			case r < 68: // lease loss
				if l := leaseOf(x); l != nil {
					ml.revoke(l, notify(rng))
				}
			case r < 78: // handoff: a worker ID moves to a generator whose clock is behind
				y := gs[rng.IntN(gens)]
				if y.clk.off.Load() >= x.clk.off.Load() {
					x, y = y, x
				}
				lx, ly := leaseOf(x), leaseOf(y)
				if x == y || lx == nil || ly == nil {
					continue
				}
				ml.mu.Lock()
				ml.handoff[lx.id] = slices.Index(gs[:], y)
				ml.mu.Unlock()
				ml.revoke(lx, notify(rng))
				ml.revoke(ly, 0)
				handoffs.Add(1)
			}
		}
	})
	go func() {
		for finished.Load() < gens {
			time.Sleep(10 * time.Millisecond)
		}
		close(done)
	}()
	wg.Wait()
	select {
	case err := <-fail:
		t.Fatal(err)
	default:
	}
	var st tortureStats
	total := 0
	for _, x := range gs {
		total += len(x.ids)
		st.losses += int(value(x.g.m.losses))
		st.rollbacks += int(value(x.g.m.rollbacks))
		st.refusals += int(value(x.g.m.refusals))
		st.seqWaits += int(value(x.g.m.seqWaits))
	}
	all := make([]int64, 0, total)
	for _, x := range gs {
		all = append(all, x.ids...)
		x.ids = nil
	}
	st.handoffs = int(handoffs.Load())
	for w := range MaxWorker + 1 {
		users := 0
		for _, x := range gs {
			if x.used[w] {
				users++
			}
		}
		if users > 1 {
			st.moved++
		}
	}
	return all, st
}

// dups sorts ids and counts the repeated ones.
func dups(ids []int64) int {
	slices.Sort(ids)
	d := 0
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			d++
		}
	}
	return d
}
