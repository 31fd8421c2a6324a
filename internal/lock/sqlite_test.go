package lock_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/lock/locktest"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// openSQLite opens a fresh SQLite store in a temp dir and returns a
// constructor of Lockers that each open the file anew, as separate
// processes sharing the data directory would.
func openSQLite(t *testing.T, opts lock.Options) (path string, newLocker func(t *testing.T) lock.Locker) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "blueprint.db")
	return path, func(t *testing.T) lock.Locker {
		t.Helper()
		ctx := context.Background()
		db, err := sqlstore.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		l, err := lock.NewSQLite(ctx, db, opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}

// expireAll marks every lease in the SQLite file at path as expired, as a
// long pause of its holders would.
func expireAll(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.ExecContext(ctx, `UPDATE lock_leases SET expires_at = 0`); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteConformance(t *testing.T) {
	_, newLocker := openSQLite(t, lock.Options{TTL: 2 * time.Second, MaxPoll: 20 * time.Millisecond})
	locktest.Run(t, newLocker)
}

func TestSQLiteLeaseExpiresAndIsLost(t *testing.T) {
	ctx := context.Background()
	path, newLocker := openSQLite(t, lock.Options{TTL: 300 * time.Millisecond, MaxPoll: 10 * time.Millisecond})
	a := newLocker(t)
	lease, err := a.Lock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	// Keepalive holds the lease well past its TTL.
	time.Sleep(900 * time.Millisecond)
	select {
	case <-lease.Lost():
		t.Fatalf("lease lost while keepalive runs: %v", lease.Err())
	default:
	}
	// Another process steals the row (as if our keepalive had been paused).
	expireAll(t, path)
	b := newLocker(t)
	lb, err := b.TryLock(ctx, "job")
	if err != nil {
		t.Fatalf("TryLock after expiry: %v", err)
	}
	select {
	case <-lease.Lost():
		if lease.Err() == nil {
			t.Fatal("Lost closed but Err is nil")
		}
	case <-time.After(time.Second):
		t.Fatal("holder not told about the loss within TTL")
	}
	if err := lease.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Unlock of a lost lease = %v, want ErrNotHeld", err)
	}
	// The stale Unlock must not release the new holder's lease.
	if _, err := a.TryLock(ctx, "job"); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock while b holds = %v, want ErrLocked", err)
	}
	if lb.Token <= lease.Token {
		t.Fatalf("token %d after %d", lb.Token, lease.Token)
	}
	if err := lb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
