// Package locktest is the conformance suite every lock.Locker backend must
// pass. newLocker is called several times per test; each call must return a
// new Locker (as a separate process would hold) on the same backend.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
)

// Run runs the conformance suite against the backend that newLocker opens.
func Run(t *testing.T, newLocker func(t *testing.T) lock.Locker) {
	open := func(t *testing.T) lock.Locker {
		t.Helper()
		l := newLocker(t)
		t.Cleanup(func() { l.Close() })
		return l
	}
	var seq atomic.Int64
	unique := func(t *testing.T) string {
		return fmt.Sprintf("%s-%d-%d", t.Name(), time.Now().UnixNano(), seq.Add(1))
	}
	ctx := context.Background()

	t.Run("TryLockExclusive", func(t *testing.T) {
		a, b := open(t), open(t)
		name := unique(t)
		la, err := a.TryLock(ctx, name)
		if err != nil {
			t.Fatalf("TryLock on a free lock: %v", err)
		}
		if la.Name != name || la.Token == 0 {
			t.Fatalf("lease = %+v, want name %q and a non-zero token", la, name)
		}
		if _, err := b.TryLock(ctx, name); !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("TryLock by another locker = %v, want ErrLocked", err)
		}
		if _, err := a.TryLock(ctx, name); !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("TryLock by the same locker = %v, want ErrLocked", err)
		}
		lo, err := b.TryLock(ctx, name+"-other")
		if err != nil {
			t.Fatalf("TryLock on another name: %v", err)
		}
		mustUnlock(t, lo)
		mustUnlock(t, la)
	})

	t.Run("UnlockReleases", func(t *testing.T) {
		a, b := open(t), open(t)
		name := unique(t)
		la, err := a.Lock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-la.Lost():
			t.Fatal("Lost closed while the lease is held")
		default:
		}
		mustUnlock(t, la)
		select {
		case <-la.Lost():
		default:
			t.Fatal("Lost not closed after Unlock")
		}
		if err := la.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("second Unlock = %v, want ErrNotHeld", err)
		}
		lb, err := b.TryLock(ctx, name)
		if err != nil {
			t.Fatalf("TryLock after Unlock: %v", err)
		}
		if lb.Token <= la.Token {
			t.Fatalf("token %d after %d: not increasing", lb.Token, la.Token)
		}
		mustUnlock(t, lb)
	})

	t.Run("TokensIncrease", func(t *testing.T) {
		ls := []lock.Locker{open(t), open(t), open(t)}
		name := unique(t)
		var last uint64
		for i := range 12 {
			lease, err := ls[i%len(ls)].Lock(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if lease.Token <= last {
				t.Fatalf("acquisition %d: token %d not greater than %d", i, lease.Token, last)
			}
			last = lease.Token
			mustUnlock(t, lease)
		}
	})

	t.Run("LockWaitsForUnlock", func(t *testing.T) {
		a, b := open(t), open(t)
		name := unique(t)
		la, err := a.Lock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *lock.Lease, 1)
		errc := make(chan error, 1)
		go func() {
			lb, err := b.Lock(ctx, name)
			if err != nil {
				errc <- err
				return
			}
			got <- lb
		}()
		select {
		case <-got:
			t.Fatal("Lock returned while another holder has the lock")
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(150 * time.Millisecond):
		}
		mustUnlock(t, la)
		select {
		case lb := <-got:
			if lb.Token <= la.Token {
				t.Fatalf("token %d after %d: not increasing", lb.Token, la.Token)
			}
			mustUnlock(t, lb)
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("waiter not granted the lock 10s after Unlock")
		}
	})

	t.Run("LockHonoursContext", func(t *testing.T) {
		a, b := open(t), open(t)
		name := unique(t)
		la, err := a.Lock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		defer cancel()
		if _, err := b.Lock(cctx, name); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock with an expiring context = %v, want DeadlineExceeded", err)
		}
		mustUnlock(t, la)
		// The cancelled waiter must not linger in any queue.
		tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
		defer tcancel()
		lb, err := b.Lock(tctx, name)
		if err != nil {
			t.Fatalf("Lock after a cancelled wait: %v", err)
		}
		mustUnlock(t, lb)
	})

	t.Run("MutualExclusion", func(t *testing.T) {
		ls := []lock.Locker{open(t), open(t), open(t)}
		name := unique(t)
		var (
			inside atomic.Int32
			mu     sync.Mutex
			tokens []uint64
			wg     sync.WaitGroup
			errs   = make(chan error, 100)
		)
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					lease, err := ls[i%len(ls)].Lock(ctx, name)
					if err != nil {
						errs <- err
						return
					}
					if n := inside.Add(1); n != 1 {
						errs <- fmt.Errorf("%d holders inside the critical section", n)
					}
					mu.Lock()
					tokens = append(tokens, lease.Token)
					mu.Unlock()
					time.Sleep(2 * time.Millisecond)
					inside.Add(-1)
					if err := lease.Unlock(ctx); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(tokens) != 24 {
			t.Fatalf("%d acquisitions, want 24", len(tokens))
		}
		for i := 1; i < len(tokens); i++ {
			if tokens[i] <= tokens[i-1] {
				t.Fatalf("tokens in acquisition order %v are not strictly increasing", tokens)
			}
		}
	})

	t.Run("FIFOWithinLocker", func(t *testing.T) {
		a, b := open(t), open(t)
		name := unique(t)
		la, err := a.Lock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease, err := b.Lock(ctx, name)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				if err := lease.Unlock(ctx); err != nil {
					t.Error(err)
				}
			}()
			time.Sleep(30 * time.Millisecond) // fixes the arrival order
		}
		mustUnlock(t, la)
		wg.Wait()
		for i, v := range order {
			if v != i {
				t.Fatalf("grant order %v, want arrival order [0 1 2 3]", order)
			}
		}
		if len(order) != 4 {
			t.Fatalf("%d grants, want 4", len(order))
		}
	})

	t.Run("Election", func(t *testing.T) {
		name := unique(t)
		rctx, cancel := context.WithCancel(ctx)
		var (
			leaders atomic.Int32
			terms   atomic.Int32
			mu      sync.Mutex
			last    uint64
			wg      sync.WaitGroup
		)
		for range 2 {
			e := &lock.Elector{Locker: open(t), Name: name, Retry: 10 * time.Millisecond}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.Run(rctx, func(lctx context.Context, lease *lock.Lease) {
					if n := leaders.Add(1); n != 1 {
						t.Errorf("%d leaders at once", n)
					}
					mu.Lock()
					if lease.Token <= last {
						t.Errorf("term token %d not greater than %d", lease.Token, last)
					}
					last = lease.Token
					mu.Unlock()
					terms.Add(1)
					select {
					case <-time.After(20 * time.Millisecond):
					case <-lctx.Done():
					}
					leaders.Add(-1)
				})
			}()
		}
		deadline := time.Now().Add(20 * time.Second)
		for terms.Load() < 4 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if n := terms.Load(); n < 4 {
			t.Fatalf("%d leadership terms in 20s, want at least 4", n)
		}
	})
}

func mustUnlock(t *testing.T, l *lock.Lease) {
	t.Helper()
	if err := l.Unlock(context.Background()); err != nil {
		t.Fatalf("Unlock %s: %v", l.Name, err)
	}
}
