package lock_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// testFences checks FencedUpdate and FencedPut against db, whose fences
// table must exist.
func testFences(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	write := func(token uint64) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := lock.FencedUpdate(ctx, tx, "video/1", token); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	checkFenceSteps(t, write)
	var stored int64
	if err := db.QueryRowContext(ctx, `SELECT token FROM fences WHERE resource = 'video/1'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 8 {
		t.Fatalf("stored token %d, want 8", stored)
	}
	if err := lock.FencedUpdate(ctx, db, "video/1", 0); err == nil {
		t.Fatal("token 0 accepted")
	}

	// FencedPut: a stale token never reaches the store; a newer token
	// recorded during the put is reported.
	puts := 0
	put := func(context.Context) error { puts++; return nil }
	if err := lock.FencedPut(ctx, db, "blob/a", 3, put); err != nil {
		t.Fatal(err)
	}
	if err := lock.FencedPut(ctx, db, "blob/a", 2, put); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("stale FencedPut = %v, want ErrStaleToken", err)
	}
	if puts != 1 {
		t.Fatalf("%d puts ran, want 1 (the stale one must not run)", puts)
	}
	racing := func(ctx context.Context) error {
		return lock.FencedUpdate(ctx, db, "blob/a", 9) // a newer holder writes meanwhile
	}
	if err := lock.FencedPut(ctx, db, "blob/a", 4, racing); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("FencedPut overtaken during the put = %v, want ErrStaleToken", err)
	}
}

// checkFenceSteps writes resource video/1 with a sequence of tokens and
// checks which ones the fence accepts.
func checkFenceSteps(t *testing.T, write func(token uint64) error) {
	t.Helper()
	steps := []struct {
		token uint64
		stale bool
	}{{5, false}, {5, false}, {7, false}, {6, true}, {1, true}, {7, false}, {8, false}}
	for i, s := range steps {
		err := write(s.token)
		if s.stale != errors.Is(err, lock.ErrStaleToken) || (!s.stale && err != nil) {
			t.Fatalf("step %d: write with token %d = %v, want stale=%v", i, s.token, err, s.stale)
		}
	}
}

func TestFencesSQLite(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.ExecContext(ctx, lock.FenceSchema); err != nil {
		t.Fatal(err)
	}
	testFences(t, db.W)
}
