package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

func TestOpenMigratesOnceAndReopens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db", "bp.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.Version(ctx)
	if err != nil || v < 1 {
		t.Fatalf("version = %d, %v", v, err)
	}
	var mode string
	if err := db.W.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	db.Close()
	db, err = Open(ctx, path) // second open: migrations already applied
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v2, _ := db.Version(ctx)
	if v2 != v {
		t.Fatalf("version changed on reopen: %d -> %d", v, v2)
	}
}

func TestConcurrentWritersDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A read-then-write transaction in each goroutine is the classic
	// SQLITE_BUSY deadlock with deferred transactions.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					var n int
					if err := tx.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n); err != nil {
						return err
					}
					_, err := tx.Exec(`INSERT INTO events(kind, subject_id, created_at) VALUES ('t', ?, 0)`, g*100+i)
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var n int
	db.R.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n)
	if n != 200 {
		t.Fatalf("rows = %d, want 200", n)
	}
}

func TestTxRollsBack(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO events(kind, subject_id, created_at) VALUES ('t', 1, 0)`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	var n int
	db.R.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n)
	if n != 0 {
		t.Fatalf("rolled-back insert is visible: %d rows", n)
	}
}
