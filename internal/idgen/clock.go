package idgen

import "time"

// clock tells a Generator the wall-clock time. The generator passes its own
// monotonic reading (time since its base) so that the system clock can add
// it to a wall-clock anchor instead of reading the wall clock on every call.
// Methods are called with the generator's lock held.
type clock interface {
	unixNano(mono time.Duration) int64
}

// resyncEvery is how often the system clock re-reads the wall clock. A step
// of the wall clock shows in IDs at most this much later.
const resyncEvery = 100 * time.Millisecond

// systemClock is the wall clock, read as an anchor plus the monotonic time
// elapsed since the anchor: a monotonic reading costs about half of a full
// time.Now on the machines Blueprint targets, and the anchor is refreshed
// every resyncEvery so that wall-clock steps (both directions) are seen.
type systemClock struct {
	base       time.Time
	anchorMono time.Duration
	anchorWall int64
	valid      bool
}

func (c *systemClock) unixNano(mono time.Duration) int64 {
	if !c.valid || mono-c.anchorMono >= resyncEvery || mono < c.anchorMono {
		now := time.Now()
		c.anchorMono, c.anchorWall, c.valid = now.Sub(c.base), now.UnixNano(), true
	}
	return c.anchorWall + int64(mono-c.anchorMono)
}
