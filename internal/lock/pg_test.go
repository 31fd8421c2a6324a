package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/lock/locktest"
	"github.com/blueprint-media/blueprint/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// startPostgres starts a throwaway PostgreSQL (internal/testenv, fsync off)
// and returns its DSN.
func startPostgres(t *testing.T) string {
	t.Helper()
	return testenv.StartPostgres(t, false)
}

func pgConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgres(t *testing.T) {
	dsn := startPostgres(t)
	ctx := context.Background()
	newLocker := func(opts lock.Options) func(t *testing.T) lock.Locker {
		return func(t *testing.T) lock.Locker {
			t.Helper()
			l, err := lock.NewPostgres(ctx, dsn, opts)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}
	t.Run("Conformance", func(t *testing.T) {
		locktest.Run(t, newLocker(lock.Options{TTL: 2 * time.Second, MaxPoll: 20 * time.Millisecond}))
	})
	t.Run("Fences", func(t *testing.T) {
		conn := pgConnect(t, dsn)
		if _, err := conn.Exec(ctx, lock.FenceSchema); err != nil {
			t.Fatal(err)
		}
		write := func(token uint64) error {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := lock.FencedUpdatePgx(ctx, tx, "video/1", token); err != nil {
				tx.Rollback(ctx)
				return err
			}
			return tx.Commit(ctx)
		}
		checkFenceSteps(t, write)
	})
	t.Run("LeaseLostWhenTakenOver", func(t *testing.T) {
		nl := newLocker(lock.Options{TTL: 300 * time.Millisecond, MaxPoll: 10 * time.Millisecond})
		a, b := nl(t), nl(t)
		la, err := a.Lock(ctx, "pg-job")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(900 * time.Millisecond)
		if err := la.Err(); err != nil {
			t.Fatalf("lease lost while keepalive runs: %v", err)
		}
		conn := pgConnect(t, dsn)
		// Expire the row as the server would after a long client pause.
		if _, err := conn.Exec(ctx, `UPDATE lock_leases SET expires_at = 0 WHERE name = 'pg-job'`); err != nil {
			t.Fatal(err)
		}
		lb, err := b.TryLock(ctx, "pg-job")
		if err != nil {
			t.Fatalf("TryLock after expiry: %v", err)
		}
		select {
		case <-la.Lost():
		case <-time.After(time.Second):
			t.Fatal("holder not told about the loss within TTL")
		}
		if err := la.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("Unlock of a lost lease = %v, want ErrNotHeld", err)
		}
		if lb.Token <= la.Token {
			t.Fatalf("token %d after %d", lb.Token, la.Token)
		}
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
