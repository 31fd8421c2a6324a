package idgen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxBackwards = 500 * time.Millisecond
	DefaultReserve      = time.Second
	DefaultOpTimeout    = 2 * time.Second
	// MaxBatch is the largest n NextN accepts.
	MaxBatch = 1 << 20
)

// Config configures a Generator.
type Config struct {
	// Leaser hands out the generator's worker ID. Required.
	Leaser Leaser
	// MaxBackwards is how far the clock may be behind the last millisecond
	// the generator issued before Next refuses with ErrClockBackwards
	// instead of waiting. Zero means DefaultMaxBackwards.
	MaxBackwards time.Duration
	// Reserve is how far ahead of the clock the generator stores its
	// high-water mark. While IDs are being issued the generator writes the
	// mark about twice per Reserve; it issues nothing beyond the stored
	// mark, so a backend that cannot be written for longer than Reserve
	// stops it; after a crash, the next holder of the worker ID may wait up
	// to Reserve before its first ID. Zero means half the lease TTL with an
	// EtcdLeaser (a crashed holder's worker ID is free only after the TTL,
	// so its successor never waits, and an etcd leader election does not
	// stop issuing) and DefaultReserve otherwise; at least 10ms.
	Reserve time.Duration
	// OpTimeout bounds each call to the lease backend made outside Start
	// and Stop. Zero means DefaultOpTimeout.
	OpTimeout time.Duration
	// RetryInterval is the first pause between attempts to acquire a new
	// lease after the lease was lost; it doubles up to 16 times itself. Zero
	// means 100ms.
	RetryInterval time.Duration
}

// reserveHinter is implemented by leasers that suggest a Config.Reserve.
type reserveHinter interface {
	reserveHint() time.Duration
}

// shardState is the last millisecond and sequence issued on one shard.
type shardState struct {
	ms  int64
	seq int64
}

// Generator issues IDs under a leased worker ID. It is safe for concurrent
// use. Create it with New, call Start before Next and Stop at the end.
type Generator struct {
	cfg  Config
	base time.Time // origin of the monotonic readings
	clk  clock
	m    metrics

	resMu   sync.Mutex // guards flight, failAt and failErr
	flight  *markWrite // the high-water write in progress, if any
	failAt  time.Time  // when the last write failed
	failErr error

	mu         sync.Mutex
	started    bool
	stopped    bool
	lease      Lease // nil while no lease is held
	lost       <-chan struct{}
	hasExp     bool
	expMono    time.Duration // a lower bound of the lease's expiry, since base
	worker     int
	leaseMark  int64 // ms since the ID epoch: the mark found at acquisition
	minMs      int64 // no ID may carry an earlier millisecond
	bound      time.Duration
	lastIssued int64 // last millisecond issued, -1 before the first
	reserved   int64 // high-water mark stored, ms since the ID epoch
	behind     bool  // a clock rollback is in progress
	wanted     bool  // Next needed a new mark since the keeper last looked
	issued     uint64
	shards     [MaxShard + 1]shardState

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Generator that is not started yet. It starts no goroutine
// and does not touch the lease backend.
func New(cfg Config) (*Generator, error) {
	return newGenerator(cfg, nil)
}

func newGenerator(cfg Config, clk clock) (*Generator, error) {
	if cfg.Leaser == nil {
		return nil, errors.New("idgen: config: Leaser is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MaxBackwards", cfg.MaxBackwards}, {"Reserve", cfg.Reserve}, {"OpTimeout", cfg.OpTimeout}, {"RetryInterval", cfg.RetryInterval}} {
		if d.v < 0 {
			return nil, fmt.Errorf("idgen: config: %s %v is negative", d.name, d.v)
		}
	}
	if cfg.MaxBackwards == 0 {
		cfg.MaxBackwards = DefaultMaxBackwards
	}
	if cfg.Reserve == 0 {
		cfg.Reserve = DefaultReserve
		if h, ok := cfg.Leaser.(reserveHinter); ok {
			cfg.Reserve = h.reserveHint()
		}
	}
	if cfg.Reserve < 10*time.Millisecond {
		return nil, fmt.Errorf("idgen: config: Reserve %v is below 10ms", cfg.Reserve)
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 100 * time.Millisecond
	}
	g := &Generator{cfg: cfg, base: time.Now(), lastIssued: -1}
	if clk == nil {
		clk = &systemClock{base: g.base}
	}
	g.clk = clk
	g.m = newMetrics(g)
	return g, nil
}

// Start acquires the first worker-ID lease, stores a high-water mark, and
// starts the goroutine that extends the mark and replaces a lost lease.
// It fails when no lease can be had within ctx.
func (g *Generator) Start(ctx context.Context) error {
	g.mu.Lock()
	if g.started {
		g.mu.Unlock()
		return errors.New("idgen: generator already started")
	}
	g.started = true
	g.mu.Unlock()

	l, err := g.cfg.Leaser.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("idgen: start: %w", err)
	}
	if err := g.install(ctx, l); err != nil {
		g.release(ctx, l, l.HighWater())
		return fmt.Errorf("idgen: start: %w", err)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.mu.Lock()
	g.cancel, g.done = cancel, make(chan struct{})
	g.mu.Unlock()
	go g.run(kctx)
	return nil
}

// Stop stops issuing IDs, stores the exact high-water mark and releases the
// lease, so that the next holder of the worker ID need not wait.
func (g *Generator) Stop(ctx context.Context) error {
	g.mu.Lock()
	if !g.started || g.stopped {
		g.mu.Unlock()
		return nil
	}
	g.stopped = true
	cancel, done := g.cancel, g.done
	g.mu.Unlock()
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("idgen: stop: %w", ctx.Err())
		}
	}
	g.waitFlight(ctx) // let a high-water write in progress finish
	g.mu.Lock()
	l, mark := g.lease, max(g.leaseMark, g.lastIssued)
	g.dropLocked()
	g.mu.Unlock()
	if l == nil {
		return nil
	}
	if err := l.Release(ctx, mark+EpochUnixMilli); err != nil {
		return fmt.Errorf("idgen: stop: %w", err)
	}
	return nil
}

// WorkerID returns the worker ID the generator holds, or -1 without a
// lease.
func (g *Generator) WorkerID() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lease == nil {
		return -1
	}
	return g.worker
}

// Next returns a new ID on the given logical shard. IDs from one generator
// on one shard increase strictly, and the time of its IDs never decreases.
// Next waits (outside the generator's lock) when the shard's 32 sequence
// numbers of the current millisecond are used up, when the clock is behind
// the last issued millisecond by at most Config.MaxBackwards, and while it
// stores a new high-water mark. It returns ErrNoLease while the generator
// holds no lease (not started, stopped, or lost and not yet replaced),
// ErrClockBackwards when the clock is further behind, and ErrBadShard.
func (g *Generator) Next(shard int) (int64, error) {
	if uint(shard) > MaxShard {
		return 0, fmt.Errorf("%w: %d", ErrBadShard, shard)
	}
	for {
		id, _, a, err := g.take(shard, 1)
		if err != nil {
			return 0, err
		}
		if a.kind == actNone {
			return id, nil
		}
		if err := g.act(a); err != nil {
			return 0, err
		}
	}
}

// NextN returns n new IDs on the given logical shard, in increasing order.
// It takes all of a millisecond's remaining sequence numbers at once, so a
// batch on one shard takes about n/32 milliseconds; n must be 1..MaxBatch.
// On error no IDs are returned (the ones taken are skipped, never reissued).
func (g *Generator) NextN(shard, n int) ([]int64, error) {
	if uint(shard) > MaxShard {
		return nil, fmt.Errorf("%w: %d", ErrBadShard, shard)
	}
	if n < 1 || n > MaxBatch {
		return nil, fmt.Errorf("%w: %d not in 1..%d", ErrBadCount, n, MaxBatch)
	}
	ids := make([]int64, 0, n)
	for len(ids) < n {
		first, k, a, err := g.take(shard, n-len(ids))
		if err != nil {
			return nil, err
		}
		for i := range int64(k) {
			ids = append(ids, first+i)
		}
		if a.kind != actNone {
			if err := g.act(a); err != nil {
				return nil, err
			}
		}
	}
	return ids, nil
}

type actKind uint8

const (
	actNone    actKind = iota
	actWait            // wait until the monotonic instant until
	actReserve         // store a high-water mark covering ms
)

type action struct {
	kind  actKind
	until time.Duration
	ms    int64
}

// take issues up to want IDs on shard in the current millisecond under the
// lock: the first ID and how many (consecutive) follow, or what to do first.
func (g *Generator) take(shard, want int) (first int64, n int, a action, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lease == nil {
		return 0, 0, a, g.noLeaseLocked()
	}
	select {
	case <-g.lost:
		return 0, 0, a, fmt.Errorf("%w: lease %d lost", ErrNoLease, g.worker)
	default:
	}
	mono := time.Since(g.base)
	if g.hasExp && mono >= g.expMono {
		// The cached expiry is a lower bound; ask the lease for the
		// renewed one before refusing.
		g.expMono = g.lease.Expires().Sub(g.base)
		if mono >= g.expMono {
			return 0, 0, a, fmt.Errorf("%w: lease %d expired %v ago", ErrNoLease, g.worker, mono-g.expMono)
		}
	}
	ns := g.clk.unixNano(mono)
	ms := ns/1e6 - EpochUnixMilli
	if ms < 0 || ms > maxTime {
		return 0, 0, a, fmt.Errorf("%w: %v", ErrClockRange, time.Unix(0, ns).UTC())
	}
	if ms < g.minMs {
		if ms < g.lastIssued && !g.behind {
			g.behind = true
			g.m.rollbacks.Inc()
		}
		back := time.Duration((g.minMs+EpochUnixMilli)*1e6 - ns)
		if back > g.bound {
			g.m.refusals.Inc()
			return 0, 0, a, fmt.Errorf("%w: clock is %v behind the last issued time (bound %v)", ErrClockBackwards, back.Round(time.Millisecond), g.bound)
		}
		return 0, 0, action{kind: actWait, until: mono + back}, nil
	}
	g.behind = false
	if ms > g.reserved {
		g.wanted = true
		return 0, 0, action{kind: actReserve, ms: ms}, nil
	}
	st := &g.shards[shard]
	var seq int64
	if st.ms == ms {
		if st.seq == MaxSequence {
			g.m.seqWaits.Inc()
			return 0, 0, action{kind: actWait, until: mono + time.Duration(1e6-ns%1e6)}, nil
		}
		seq = st.seq + 1
	} else {
		st.ms = ms
	}
	n = int(min(int64(want), MaxSequence-seq+1))
	st.seq = seq + int64(n) - 1
	g.lastIssued, g.minMs, g.bound = ms, ms, g.cfg.MaxBackwards
	g.issued += uint64(n)
	return compose(ms, shard, g.worker, seq), n, a, nil
}

func (g *Generator) noLeaseLocked() error {
	switch {
	case !g.started:
		return fmt.Errorf("%w: generator not started", ErrNoLease)
	case g.stopped:
		return fmt.Errorf("%w: generator stopped", ErrNoLease)
	}
	return fmt.Errorf("%w: lease lost, acquiring a new one", ErrNoLease)
}

// act does what take asked for, outside the lock.
func (g *Generator) act(a action) error {
	switch a.kind {
	case actWait:
		g.pause(a.until)
	case actReserve:
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
		defer cancel()
		return g.reserve(ctx, a.ms+g.cfg.Reserve.Milliseconds(), false)
	}
	return nil
}

// pause waits until the monotonic instant until: it sleeps while more than
// 2ms are left (sleeps overshoot by about 1ms) and yields the processor for
// the rest, so that sequence waits end on the millisecond boundary.
func (g *Generator) pause(until time.Duration) {
	for {
		left := until - time.Since(g.base)
		switch {
		case left <= 0:
			return
		case left > 2*time.Millisecond:
			time.Sleep(left - 1500*time.Microsecond)
		default:
			runtime.Gosched()
		}
	}
}

// markWrite is a high-water write in progress; callers that need a mark
// while one is being written wait for it instead of writing their own.
type markWrite struct {
	done chan struct{}
	err  error
}

// failFast is how long after a failed high-water write Next fails at once
// instead of trying again, so that callers do not queue up behind a backend
// that is down; the keeper goroutine keeps trying.
const failFast = 250 * time.Millisecond

// reserve stores mark (ms since the ID epoch) as the high-water mark of the
// current lease unless a higher one is stored already. With retry false it
// fails at once within failFast of a failed write.
func (g *Generator) reserve(ctx context.Context, mark int64, retry bool) error {
	for {
		g.resMu.Lock()
		if f := g.flight; f != nil {
			g.resMu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrHighWater, ctx.Err())
			}
			if f.err != nil && !retry {
				return f.err
			}
			continue // covered now, or try again
		}
		if !retry && g.failErr != nil && time.Since(g.failAt) < failFast {
			err := g.failErr
			g.resMu.Unlock()
			return err
		}
		g.mu.Lock()
		l, reserved := g.lease, g.reserved
		g.mu.Unlock()
		if l == nil || mark <= reserved {
			g.resMu.Unlock()
			return nil // take reports a missing lease
		}
		f := &markWrite{done: make(chan struct{})}
		g.flight = f
		g.resMu.Unlock()

		err := l.SetHighWater(ctx, mark+EpochUnixMilli)
		switch {
		case err == nil:
			g.m.markWrites.Inc()
			g.mu.Lock()
			if g.lease == l && mark > g.reserved {
				g.reserved = mark
			}
			g.mu.Unlock()
		case errors.Is(err, ErrLeaseLost):
			g.m.markErrors.Inc()
			err = fmt.Errorf("%w: %w", ErrNoLease, err)
		default:
			g.m.markErrors.Inc()
			err = fmt.Errorf("%w: %w", ErrHighWater, err)
		}
		g.resMu.Lock()
		g.flight, f.err = nil, err
		if err != nil {
			g.failAt, g.failErr = time.Now(), err
		} else {
			g.failErr = nil
		}
		close(f.done)
		g.resMu.Unlock()
		return err
	}
}

// waitFlight waits for the high-water write in progress, if any.
func (g *Generator) waitFlight(ctx context.Context) {
	g.resMu.Lock()
	f := g.flight
	g.resMu.Unlock()
	if f != nil {
		select {
		case <-f.done:
		case <-ctx.Done():
		}
	}
}

// nowMs reads the clock in milliseconds since the ID epoch.
func (g *Generator) nowMs() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.clk.unixNano(time.Since(g.base))/1e6 - EpochUnixMilli
}

// install makes l the generator's lease: it stores a high-water mark Reserve
// ahead of the later of the clock and the mark l carries, and sets the
// floor above the mark and above every millisecond issued so far.
func (g *Generator) install(ctx context.Context, l Lease) error {
	if id := l.ID(); id < 0 || id > MaxWorker {
		return fmt.Errorf("idgen: leaser returned worker id %d outside 0..%d", id, MaxWorker)
	}
	found := max(l.HighWater()-EpochUnixMilli, -1)
	mark := max(found, g.nowMs()) + g.cfg.Reserve.Milliseconds()
	octx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
	defer cancel()
	if err := l.SetHighWater(octx, mark+EpochUnixMilli); err != nil {
		g.m.markErrors.Inc()
		return fmt.Errorf("store high-water mark of worker id %d: %w", l.ID(), err)
	}
	g.m.markWrites.Inc()
	exp := l.Expires()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lease, g.lost, g.worker = l, l.Lost(), l.ID()
	g.hasExp, g.expMono = !exp.IsZero(), exp.Sub(g.base)
	g.leaseMark, g.reserved = found, mark
	// Above the mark found (the previous holder's IDs) and above our own
	// last millisecond (so that per-shard order survives a new worker ID).
	g.minMs = max(found+1, g.lastIssued+1, 0)
	// A holder that crashed left a mark up to Reserve ahead of its last ID.
	g.bound = g.cfg.MaxBackwards + g.cfg.Reserve
	g.shards = [MaxShard + 1]shardState{}
	return nil
}

// dropLocked forgets the current lease.
func (g *Generator) dropLocked() {
	g.lease, g.lost, g.hasExp = nil, nil, false
}

// run extends the high-water mark ahead of the clock while IDs are being
// issued and replaces a lost lease.
func (g *Generator) run(ctx context.Context) {
	defer close(g.done)
	tick := time.NewTicker(g.cfg.Reserve / 4)
	defer tick.Stop()
	for {
		g.mu.Lock()
		l, lost := g.lease, g.lost
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-lost:
			g.m.losses.Inc()
			g.mu.Lock()
			mark := max(g.leaseMark, g.lastIssued)
			if g.lease == l {
				g.dropLocked()
			}
			g.mu.Unlock()
			g.release(ctx, l, mark+EpochUnixMilli) // frees local resources only
			g.reacquire(ctx)
		case <-tick.C:
			g.extend(ctx)
		}
	}
}

// extend stores a new mark when IDs were issued within the last Reserve (or
// Next wanted one) and less than half of Reserve is left before the stored
// mark.
func (g *Generator) extend(ctx context.Context) {
	r := g.cfg.Reserve.Milliseconds()
	now := g.nowMs()
	g.mu.Lock()
	due := g.lease != nil && (g.lastIssued >= now-r || g.wanted) && g.reserved-now < r/2
	g.wanted = false
	g.mu.Unlock()
	if !due {
		return
	}
	octx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
	defer cancel()
	g.reserve(octx, now+r, true) // a failure is counted; Next retries it
}

// reacquire acquires and installs a new lease, retrying with backoff until
// it succeeds or ctx ends.
func (g *Generator) reacquire(ctx context.Context) {
	wait := g.cfg.RetryInterval
	for {
		actx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
		l, err := g.cfg.Leaser.Acquire(actx)
		if err == nil {
			if err = g.install(actx, l); err != nil {
				g.release(ctx, l, l.HighWater())
			}
		}
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 16*g.cfg.RetryInterval)
	}
}

// release releases l with a fresh timeout, even when ctx has ended, so that
// a lease acquired during shutdown is not left to expire.
func (g *Generator) release(ctx context.Context, l Lease, unixMs int64) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.OpTimeout)
	defer cancel()
	l.Release(rctx, unixMs)
}
