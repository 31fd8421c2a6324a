package cache

import "math"

// TinyLFU is W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly
// Efficient Cache Admission Policy", ACM ToS 2017), the policy of Caffeine
// and otter, with the optional hill-climbing window of "Adaptive Software
// Cache Management" (Middleware 2018).
//
// The cache is split into a small window, an LRU that admits every new key,
// and a main region, a segmented LRU of a probation and a protected part
// (80 % of the main region). A key leaving the window becomes a candidate
// for the main region and duels the probation's least recently used key,
// the victim: the key that a frequency sketch (see sketch) has seen more
// often recently stays, the other leaves. A hit in probation promotes the
// key to protected; protected overflow demotes its oldest keys back to
// probation. The window lets bursts of new keys hit a few times before they
// must prove their frequency; the sketch keeps one-hit wonders and scans
// out of the main region.
//
// With Adaptive set the window starts at 1 % of the cache and a hill climber
// resizes it: every sample period (three requests per entry) it compares the
// hit ratio with the previous period's and, if the last move of the window
// made a significant difference, keeps moving in the direction that improved
// it, by a step that starts at 6.25 % of the cache, decays by 2 % per period
// and restarts when the hit ratio jumps by 5 points (see climb for how it
// differs from Caffeine's). Recency-heavy workloads grow the window towards
// LRU, frequency-heavy ones shrink it.
//
// A Doorkeeper (see sketch) in front of the frequency sketch is on in the
// registered policies: on the P3 trace it is worth 1.3 to 1.8 points, at a
// cost of 0.4 to 0.7 on OLTP (docs/cache.md).
//
// All operations are O(1); Add and Update also run one duel per evicted
// key. Aging the sketch costs O(sketch size) once per period, amortized O(1)
// per request.
type TinyLFU[K comparable] struct {
	limits Limits
	opts   TinyLFUOptions

	window, probation, protected list[K]
	sketch                       *sketch

	capacity     int64 // in region units (see Limits.capacity)
	windowMax    int64
	protectedMax int64

	// Hill climber state.
	sampleHits, sampleMisses uint64
	prevHitRate              float64
	step                     float64 // signed: the direction of the next move
	moved                    bool    // whether the window moved after the last sample
	idle                     int     // samples since the window last moved
	probing                  bool    // whether the last move was a probe
	probeEvery               int     // idle samples before a probe

	rng uint64
	// preloaded keeps the sum that preload computes, so that its loads are
	// not optimized away.
	preloaded uint64
}

// TinyLFUOptions tune a TinyLFU policy.
type TinyLFUOptions struct {
	// Adaptive enables the hill climber that resizes the window.
	Adaptive bool
	// Doorkeeper puts a Bloom filter in front of the frequency sketch.
	Doorkeeper bool
	// WindowPercent is the initial window size in percent of the cache;
	// zero means 1.
	WindowPercent float64
	// Seed seeds the generator of the random admissions that defend
	// against hash flooding.
	Seed uint64
}

// The queue a TinyLFU node is in.
const (
	qWindow uint8 = iota + 1
	qProbation
	qProtected
)

// Region and hill-climber parameters; the first four are Caffeine's.
const (
	tinyLFUProtectedShare = 0.80   // of the main region
	climbStepShare        = 0.0625 // first step, of the capacity
	climbStepDecay        = 0.98   // per sample period without a jump
	climbRestartChange    = 0.05   // hit ratio change that restarts the step
	// admitWarmFrequency is the frequency from which a candidate that does
	// not beat its victim is still admitted with probability 1/128. Without
	// it an attacker who keeps one victim hot could pin the main region
	// (hash flooding); warm-only keeps random admissions rare.
	admitWarmFrequency = 6
	// climbNoiseZ is how many standard errors a change of the hit ratio
	// must exceed to count as an effect of the last move.
	climbNoiseZ = 2
	// climbProbeEvery is the number of samples after which an idle climber
	// probes one step.
	climbProbeEvery = 4
	// climbProbeMax bounds the probe interval, which doubles after each
	// probe that lowered the hit ratio.
	climbProbeMax = 64
	// climbSamplesPerEntry is the sample period in requests per entry.
	// Caffeine samples 10 requests per entry; with the noise and phase
	// guards above, 3 lets the window follow recency-heavy traces (Corda)
	// several times faster at no loss elsewhere (docs/cache.md).
	climbSamplesPerEntry = 3
)

// NewTinyLFU returns an empty W-TinyLFU policy bounded by l.
func NewTinyLFU[K comparable](l Limits, o TinyLFUOptions) *TinyLFU[K] {
	p := &TinyLFU[K]{limits: l, opts: o, rng: o.Seed | 1}
	p.window.init()
	p.probation.init()
	p.protected.init()
	p.capacity = l.capacity()
	pct := o.WindowPercent
	if pct <= 0 {
		pct = 1
	}
	p.setWindow(p.capacity - int64(float64(p.capacity)*(1-pct/100)))
	// The sketch is sized for the number of entries; a cost-bounded policy
	// starts small and doubles it as its population grows (see Add).
	entries := l.MaxEntries
	if entries == 0 || (l.weighted() && entries > 1<<10) {
		entries = 1 << 10
	}
	p.sketch = newSketch(entries, o.Doorkeeper)
	p.step = -climbStepShare * float64(p.capacity)
	// The first sample is a baseline followed at once by a probe.
	p.probeEvery = climbProbeEvery
	p.idle = climbProbeEvery - 1
	return p
}

// Name returns "tinylfu", or "tinylfu-static" without the hill climber.
func (p *TinyLFU[K]) Name() string {
	if p.opts.Adaptive {
		return PolicyTinyLFU
	}
	return PolicyTinyLFUStatic
}

// Len returns the number of resident nodes.
func (p *TinyLFU[K]) Len() int { return p.window.len + p.probation.len + p.protected.len }

// Cost returns the sum of the resident nodes' costs.
func (p *TinyLFU[K]) Cost() int64 { return p.window.cost + p.probation.cost + p.protected.cost }

// WindowShare returns the window's current target size as a share of the
// cache, for tests and the simulator's diagnostics.
func (p *TinyLFU[K]) WindowShare() float64 {
	return float64(p.windowMax) / float64(p.capacity)
}

// size returns the size of q in region units.
func (p *TinyLFU[K]) size(q *list[K]) int64 {
	if p.limits.weighted() {
		return q.cost
	}
	return int64(q.len)
}

// setWindow sets the window's maximum and the protected segment's share of
// what is left.
func (p *TinyLFU[K]) setWindow(w int64) {
	w = min(max(w, 1), max(p.capacity-1, 1))
	p.windowMax = w
	p.protectedMax = int64(tinyLFUProtectedShare * float64(p.capacity-w))
}

// queueOf returns the list n is in.
func (p *TinyLFU[K]) queueOf(n *Node[K]) *list[K] {
	switch n.queue {
	case qWindow:
		return &p.window
	case qProbation:
		return &p.probation
	}
	return &p.protected
}

// Add puts n at the window's most recently used end, then moves the
// window's overflow to probation and runs the duels that bring the policy
// within its limits. A node too big for the limits is rejected at once.
func (p *TinyLFU[K]) Add(n *Node[K], evicted []*Node[K]) []*Node[K] {
	if p.limits.tooBig(n.Cost) {
		n.rejected = true
		return append(evicted, n)
	}
	n.rejected = false
	p.sketch.increment(n.Hash)
	p.sampleMisses++
	n.queue = qWindow
	p.window.pushBack(n)
	if p.limits.weighted() && p.Len() > p.sketch.entries {
		p.sketch.resize(2*p.sketch.entries, p.opts.Doorkeeper)
	}
	evicted = p.evict(evicted)
	p.climb()
	return evicted
}

// Hit counts an access in the sketch and moves n as its segment requires:
// to the window's or protected's most recently used end, or from probation
// to protected.
func (p *TinyLFU[K]) Hit(n *Node[K]) {
	p.sketch.increment(n.Hash)
	p.sampleHits++
	p.touch(n)
	p.climb()
}

// preload reads, for each node of a batch about to be hit, its sketch block
// and its list neighbours, so that the CPU fetches all those cache lines at
// once; the Hit calls that follow then mostly find them cached. It changes
// nothing.
func (p *TinyLFU[K]) preload(nodes []*Node[K]) {
	var sink uint64
	sk := p.sketch
	for _, n := range nodes {
		sink += sk.table[(n.Hash&sk.blockMask)<<3]
		if sk.door != nil {
			a, b := sk.doorBits(n.Hash)
			sink += sk.door[a>>6] ^ sk.door[b>>6]
		}
		if n.prev != nil && n.prev.next == n {
			sink++
		}
		if n.next != nil && n.next.prev == n {
			sink++
		}
	}
	p.preloaded = sink
}

func (p *TinyLFU[K]) touch(n *Node[K]) {
	switch n.queue {
	case qWindow:
		p.window.moveToBack(n)
	case qProtected:
		p.protected.moveToBack(n)
	case qProbation:
		p.probation.remove(n)
		n.queue = qProtected
		p.protected.pushBack(n)
		p.demote()
	}
}

// demote moves protected's oldest nodes to probation while protected is
// over its share.
func (p *TinyLFU[K]) demote() {
	for p.size(&p.protected) > p.protectedMax && p.protected.len > 0 {
		d := p.protected.front()
		p.protected.remove(d)
		d.queue = qProbation
		p.probation.pushBack(d)
	}
}

// Update sets n's cost, counts an access and evicts as needed; n itself is
// evicted if it no longer fits at all.
func (p *TinyLFU[K]) Update(n *Node[K], cost int64, evicted []*Node[K]) []*Node[K] {
	q := p.queueOf(n)
	q.cost += cost - n.Cost
	n.Cost = cost
	if p.limits.tooBig(cost) {
		q.remove(n)
		n.rejected = true
		evicted = append(evicted, n)
	} else {
		p.sketch.increment(n.Hash)
		p.sampleHits++
		p.touch(n)
		if n.queue == qProtected {
			p.demote()
		}
	}
	evicted = p.evict(evicted)
	p.climb()
	return evicted
}

// Remove unlinks n.
func (p *TinyLFU[K]) Remove(n *Node[K]) { p.queueOf(n).remove(n) }

// evict moves the window's overflow to probation's most recently used end,
// where those nodes become candidates, and then, while the policy is over
// its limits, lets each candidate duel a victim taken from probation's
// least recently used end (then protected's, then the window's once there
// is nothing older): the one with the lower estimated frequency leaves.
func (p *TinyLFU[K]) evict(evicted []*Node[K]) []*Node[K] {
	var cand *Node[K]
	for p.size(&p.window) > p.windowMax && p.window.len > 0 {
		c := p.window.front()
		p.window.remove(c)
		c.queue = qProbation
		p.probation.pushBack(c)
		if cand == nil {
			cand = c
		}
	}
	victim, vq := p.probation.front(), qProbation
	for p.limits.over(p.Len(), p.Cost()) {
		// Once the victims reach the candidates, or probation is empty,
		// take victims from protected, then from the window.
		if vq == qProbation && (victim == nil || victim == cand) {
			victim, vq = p.protected.front(), qProtected
		}
		if vq == qProtected && victim == nil {
			victim, vq = p.window.front(), qWindow
		}
		switch {
		case cand == nil && victim == nil:
			return evicted // unreachable: an over-limit policy holds nodes
		case cand == nil:
			next := p.queueOf(victim).after(victim)
			evicted = p.drop(victim, false, evicted)
			victim = next
		case victim == nil:
			next := p.probation.after(cand)
			evicted = p.drop(cand, true, evicted)
			cand = next
		case p.admit(cand, victim):
			next := p.queueOf(victim).after(victim)
			evicted = p.drop(victim, false, evicted)
			victim = next
			cand = p.probation.after(cand)
		default:
			next := p.probation.after(cand)
			evicted = p.drop(cand, true, evicted)
			cand = next
		}
	}
	return evicted
}

// drop unlinks n and appends it to evicted.
func (p *TinyLFU[K]) drop(n *Node[K], rejected bool, evicted []*Node[K]) []*Node[K] {
	p.queueOf(n).remove(n)
	n.rejected = rejected
	return append(evicted, n)
}

// admit reports whether the candidate should replace the victim: if it is
// more frequent, or, rarely, if it is at least warm (see admitWarmFrequency).
func (p *TinyLFU[K]) admit(cand, victim *Node[K]) bool {
	cf := p.sketch.frequency(cand.Hash)
	vf := p.sketch.frequency(victim.Hash)
	if cf > vf {
		return true
	}
	if cf >= admitWarmFrequency {
		// xorshift64
		p.rng ^= p.rng << 13
		p.rng ^= p.rng >> 7
		p.rng ^= p.rng << 17
		return p.rng&127 == 0
	}
	return false
}

// climb runs one hill-climbing step at the end of each sample period.
//
// Compared with Caffeine's climber, which moves the window after every
// sample, this one only moves when the evidence says so, because the traces
// showed two ways in which moving on noise loses hits:
//
//   - Noise: a change of the hit ratio smaller than twice its standard
//     error (for a binomial sample of that size) does not count as an
//     effect of the last move; the window stays and the step decays.
//   - Phase changes: a sample after which the window did not actually move
//     (it was at a bound, or stayed) says nothing about the direction, so
//     it only becomes the new baseline. On P3, a drop of the hit ratio
//     between two phases of the trace would otherwise push the window away
//     from its (right) minimum until the end of the trace.
//
// After climbProbeEvery samples without a move the climber probes one
// step, so that it can follow a workload that changed; each probe that
// lowers the hit ratio doubles that interval, up to climbProbeMax, so that
// probing costs little on a workload whose best window is stable (loop).
func (p *TinyLFU[K]) climb() {
	if !p.opts.Adaptive {
		return
	}
	requests := p.sampleHits + p.sampleMisses
	// The sample is sized by the entries the sketch expects (the capacity
	// when counting entries), so that it grows with a weighted policy.
	if requests < uint64(p.sketch.entries)*climbSamplesPerEntry {
		return
	}
	hits := p.sampleHits
	p.sampleHits, p.sampleMisses = 0, 0
	if p.size(&p.window)+p.size(&p.probation)+p.size(&p.protected) < p.capacity/2 {
		// Not full yet: the hit ratio says nothing about the split.
		return
	}
	rate := float64(hits) / float64(requests)
	change := rate - p.prevHitRate
	p.prevHitRate = rate
	if !p.moved {
		p.idle++
		if p.idle < p.probeEvery {
			return
		}
		p.moved = p.moveWindow(p.step, true)
		p.probing = true
		return
	}
	probe := p.probing
	p.idle, p.probing = 0, false
	if math.Abs(change) < climbNoiseZ*math.Sqrt(2*rate*(1-rate)/float64(requests)) {
		p.step *= climbStepDecay
		p.moved = false
		return
	}
	amount := p.step
	if change < 0 {
		amount = -p.step
		if probe {
			// A probe that hurt: probe half as often.
			p.probeEvery = min(2*p.probeEvery, climbProbeMax)
		}
	} else if probe {
		p.probeEvery = climbProbeEvery
	}
	if math.Abs(change) >= climbRestartChange {
		p.step = math.Copysign(climbStepShare*float64(p.capacity), amount)
	} else {
		p.step = climbStepDecay * amount
	}
	p.moved = p.moveWindow(amount, false)
}

// moveWindow resizes the window by amount (region units), within its
// bounds, and reports whether it changed. A probe that the bound in its
// direction cancels is turned around, so that a probe always moves.
func (p *TinyLFU[K]) moveWindow(amount float64, probe bool) bool {
	old := p.windowMax
	p.setWindow(old + int64(amount))
	if p.windowMax == old && probe {
		p.step = -p.step
		p.setWindow(old - int64(amount))
	}
	p.idle = 0
	p.demote()
	return p.windowMax != old
}
