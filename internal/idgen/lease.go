package idgen

import (
	"context"
	"time"
)

// Leaser hands out worker IDs, 0..MaxWorker, so that no two live
// generators hold the same one. FileLeaser is the embedded single-machine
// backend and EtcdLeaser the scale-out backend.
type Leaser interface {
	// Acquire leases a free worker ID and keeps the lease alive until it is
	// released or lost. It returns ErrNoFreeWorker when every worker ID is
	// held.
	Acquire(ctx context.Context) (Lease, error)
}

// Lease is a held worker ID and its high-water mark: the latest time, in
// milliseconds since the Unix epoch, that any ID of this worker ID may
// carry. A generator stores a mark ahead of every millisecond before it
// issues IDs in it, and the next holder of the worker ID issues only above
// the mark it finds, so a restart after a clock step back cannot repeat an
// ID.
//
// Methods other than Release are safe for concurrent use.
type Lease interface {
	// ID returns the leased worker ID.
	ID() int
	// HighWater returns the mark stored for this worker ID when it was
	// acquired, 0 if there was none.
	HighWater() int64
	// Lost returns a channel that is closed when the lease is lost or
	// released.
	Lost() <-chan struct{}
	// Expires returns the monotonic instant from which another process may
	// hold this worker ID unless the lease is renewed before it; the zero
	// Time means the lease does not expire while the process lives. Renewals
	// move it forward. The holder stops issuing IDs at this instant even if
	// Lost has not been closed yet (the process may just have resumed from a
	// pause).
	Expires() time.Time
	// SetHighWater durably stores ms as the mark. It returns ErrLeaseLost
	// (and closes Lost) when the lease is no longer held, so a deposed holder
	// can never move the mark of the next one.
	SetHighWater(ctx context.Context, ms int64) error
	// Release stores ms as the final mark, if the lease is still held, and
	// gives up the worker ID. The caller must have stopped issuing IDs
	// under it. Release after loss only frees local resources.
	Release(ctx context.Context, ms int64) error
}
