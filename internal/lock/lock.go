// Package lock provides lease-based distributed locks with fencing tokens
// and leader election on top of them.
//
// A Locker hands out a Lease per acquired lock. Every Lease carries a
// fencing token that is strictly greater than the token of any earlier
// holder of the same lock name, so storage that remembers the highest token
// it has seen (see FencedUpdate and FencedPut) can reject writes from a
// holder whose lease expired while it was paused. A lease is kept alive by a
// goroutine that Lock starts and Unlock stops; Lost reports the moment the
// holder must assume the lease is gone.
//
// Backends: NewSQLite (embedded, a lease table in the shared SQLite
// database), NewPostgres (a lease table on PostgreSQL, server clock) and
// NewEtcd (concurrency sessions and mutexes). They all pass the conformance
// suite in package locktest.
package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrLocked is returned by TryLock when another holder has the lock.
var ErrLocked = errors.New("lock: locked by another holder")

// ErrNotHeld is returned by Unlock when the lease was already released or lost.
var ErrNotHeld = errors.New("lock: lease not held")

// ErrStaleToken is returned by the fence helpers when a write carries a
// fencing token older than the newest one the storage has accepted.
var ErrStaleToken = errors.New("lock: stale fencing token")

// ErrClosed is returned by a Locker after Close.
var ErrClosed = errors.New("lock: locker closed")

// Locker acquires named locks. Implementations are safe for concurrent use.
//
// Within one Locker, waiters for the same name queue in FIFO order and only
// the head of the queue talks to the backend, so a released lock wakes one
// waiter, not all of them. Across Lockers (processes) the order depends on
// the backend: exact FIFO on etcd, approximate (polling) on SQLite and
// PostgreSQL.
type Locker interface {
	// Lock blocks until the lock is acquired or ctx is done.
	Lock(ctx context.Context, name string) (*Lease, error)
	// TryLock acquires the lock if it is free and returns ErrLocked otherwise.
	TryLock(ctx context.Context, name string) (*Lease, error)
	// Close releases the Locker's resources. Held leases are lost.
	Close() error
}

// Lease is a held lock. Token is the fencing token: strictly increasing per
// lock name across all holders of that name on the same backend.
type Lease struct {
	Name  string
	Token uint64

	// Acquired is when Lock returned the lease, on the local clock.
	Acquired time.Time

	lost     chan struct{}
	lostOnce sync.Once
	cause    error
	done     chan struct{} // closed by Unlock to stop the keepalive
	doneOnce sync.Once
	wg       sync.WaitGroup

	release  func(ctx context.Context) error // backend release, called once
	relOnce  sync.Once
	unqueue  func() // hands the local queue slot to the next waiter
	metrics  *Metrics
	backend  string
	unlocked bool
	mu       sync.Mutex
}

func newLease(name string, token uint64, backend string, m *Metrics) *Lease {
	return &Lease{
		Name:     name,
		Token:    token,
		Acquired: time.Now(),
		lost:     make(chan struct{}),
		done:     make(chan struct{}),
		backend:  backend,
		metrics:  m,
	}
}

// Lost returns a channel that is closed when the lease ends: when the
// backend tells the holder it lost the lock (TTL expiry, keepalive failure,
// session loss) and also after Unlock. Work protected by the lock must stop
// when it is closed, and writes must still carry Token, because a paused
// process cannot observe the channel in time.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns why the lease was lost, or nil while it is held. After a
// clean Unlock it returns ErrNotHeld.
func (l *Lease) Err() error {
	select {
	case <-l.lost:
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.cause
	default:
		return nil
	}
}

// Context returns a context derived from parent that is cancelled when the
// lease is lost or released.
func (l *Lease) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		select {
		case <-l.lost:
			cancel(fmt.Errorf("lock: lease %s lost: %w", l.Name, l.Err()))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// markLost closes Lost with cause; only the first call has an effect.
func (l *Lease) markLost(cause error) {
	l.lostOnce.Do(func() {
		l.mu.Lock()
		l.cause = cause
		unlocked := l.unlocked
		l.mu.Unlock()
		if !unlocked {
			l.metrics.lost(l.backend)
		}
		close(l.lost)
		l.releaseQueue()
	})
}

func (l *Lease) releaseQueue() {
	if l.unqueue != nil {
		l.unqueue()
	}
}

// stopKeepalive stops the keepalive goroutine and waits for it.
func (l *Lease) stopKeepalive() {
	l.doneOnce.Do(func() { close(l.done) })
	l.wg.Wait()
}

// Unlock releases the lease. It returns ErrNotHeld if the lease had already
// been lost or released; the keepalive goroutine is stopped either way.
func (l *Lease) Unlock(ctx context.Context) error {
	l.mu.Lock()
	already := l.unlocked
	l.unlocked = true
	l.mu.Unlock()
	l.stopKeepalive()
	if already {
		return ErrNotHeld
	}
	wasLost := l.Err() != nil
	var err error
	l.relOnce.Do(func() {
		if l.release != nil {
			err = l.release(ctx)
		}
	})
	l.metrics.released(l.backend, time.Since(l.Acquired))
	l.markLost(ErrNotHeld)
	if wasLost {
		return ErrNotHeld
	}
	if err != nil {
		return fmt.Errorf("lock: unlock %s: %w", l.Name, err)
	}
	return nil
}

// queue is a per-Locker FIFO of waiters per lock name: only the head of the
// queue contacts the backend, the others sleep on their own channel.
type queue struct {
	mu    sync.Mutex
	names map[string]*waitList
}

type waitList struct {
	held    bool
	waiters []chan struct{}
}

func newQueue() *queue { return &queue{names: make(map[string]*waitList)} }

// tryEnter takes the slot for name if nobody in this process holds or waits for it.
func (q *queue) tryEnter(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.names[name]
	if w == nil {
		w = &waitList{}
		q.names[name] = w
	}
	if w.held {
		return false
	}
	w.held = true
	return true
}

// enter blocks until the caller owns the slot for name, in arrival order.
func (q *queue) enter(ctx context.Context, name string) error {
	q.mu.Lock()
	w := q.names[name]
	if w == nil {
		w = &waitList{}
		q.names[name] = w
	}
	if !w.held {
		w.held = true
		q.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	w.waiters = append(w.waiters, ch)
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		for i, c := range w.waiters {
			if c == ch {
				w.waiters = append(w.waiters[:i], w.waiters[i+1:]...)
				q.mu.Unlock()
				return ctx.Err()
			}
		}
		q.mu.Unlock()
		// The slot was handed to us concurrently; pass it on.
		q.leave(name)
		return ctx.Err()
	}
}

// leave hands the slot for name to the next waiter, or frees it.
func (q *queue) leave(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.names[name]
	if w == nil {
		return
	}
	if len(w.waiters) > 0 {
		ch := w.waiters[0]
		w.waiters = w.waiters[1:]
		close(ch)
		return
	}
	delete(q.names, name)
}

// onceFunc returns f wrapped so that it runs at most once.
func onceFunc(f func()) func() {
	var once sync.Once
	return func() { once.Do(f) }
}
