package sqlstore_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestPostgresStore opens the store on a throwaway PostgreSQL server: the
// PostgreSQL migrations apply (twice is a no-op), and statements in the
// services' dialect run through the rewriting connection.
func TestPostgresStore(t *testing.T) {
	ctx := context.Background()
	url := testenv.StartPostgres(t, false)
	db, err := sqlstore.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.Version(ctx)
	if err != nil || v < 9 {
		t.Fatalf("version %d, %v", v, err)
	}
	db.Close()
	if db, err = sqlstore.OpenPostgres(ctx, url); err != nil { // already migrated
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		for range 2 {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
				int64(1)<<40, "Ann", "ann@example.com", "x", 1); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO events(kind, subject_id, created_at) VALUES (?, ?, ?)`, "user.created", int64(1)<<40, 1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var n int
	if err := db.R.QueryRowContext(ctx, `SELECT username, (SELECT COUNT(*) FROM users) FROM users WHERE lower(username) = lower(?)`, "ANN").Scan(&name, &n); err != nil || name != "Ann" || n != 1 {
		t.Fatalf("read back: %q %d %v", name, n, err)
	}
	if _, err := db.W.ExecContext(ctx, `INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, 'ANN', 'b@example.com', 'x', 1)`, 2); err == nil {
		t.Error("a user name differing only in case was accepted")
	}
}

// TestPostgresMigrationsMirrorSQLite: every PostgreSQL migration has a
// SQLite migration of the same number and name.
func TestPostgresMigrationsMirrorSQLite(t *testing.T) {
	pg, err := fs.Glob(sqlstore.MigrationFiles(), "migrations/postgres/*.sql")
	if err != nil || len(pg) == 0 {
		t.Fatalf("no PostgreSQL migrations: %v", err)
	}
	for _, f := range pg {
		if _, err := fs.Stat(sqlstore.MigrationFiles(), "migrations/"+filepath.Base(f)); err != nil {
			t.Errorf("%s has no SQLite counterpart", f)
		}
	}
}
