package lock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Campaign blocks until the caller becomes the leader for name and returns
// the leader's lease. Leadership ends when the lease is lost or unlocked;
// the lease token orders terms, so a deposed leader's writes can be fenced.
func Campaign(ctx context.Context, l Locker, name string) (*Lease, error) {
	lease, err := l.Lock(ctx, "election/"+name)
	if err != nil {
		return nil, fmt.Errorf("lock: campaign %s: %w", name, err)
	}
	return lease, nil
}

// Elector keeps a singleton job running on exactly one process at a time:
// it campaigns, runs the job while it leads, and campaigns again when it
// loses leadership.
type Elector struct {
	Locker Locker
	Name   string
	// Retry is the pause after a failed campaign. Default 1s.
	Retry time.Duration
}

// Run campaigns for e.Name until ctx is done. Each time it wins, it calls
// lead with a context that is cancelled when leadership is lost, and the
// lease whose Token must fence the job's writes. When lead returns, the
// lease is released and Run campaigns again. Run returns ctx.Err().
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, lease *Lease)) error {
	retry := e.Retry
	if retry <= 0 {
		retry = time.Second
	}
	for {
		lease, err := Campaign(ctx, e.Locker, e.Name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrClosed) {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(retry):
			}
			continue
		}
		lctx, cancel := lease.Context(ctx)
		lead(lctx, lease)
		cancel()
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = lease.Unlock(uctx) // ErrNotHeld after a loss is expected
		ucancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
