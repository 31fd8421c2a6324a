package sqlstore_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
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

	// LastInsertId works as on SQLite for tables with an identity id, in
	// and outside a transaction; RowsAffected counts what was inserted.
	var ids []int64
	for range 2 {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `INSERT INTO notify_emails(user_id, kind, status, next_at, created_at, updated_at) VALUES (?, 'single', 'pending', 1, 1, 1)`, 7)
			if err != nil {
				return err
			}
			id, err := res.LastInsertId()
			if n, _ := res.RowsAffected(); n != 1 {
				t.Errorf("rows affected %d", n)
			}
			ids = append(ids, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] <= 0 || ids[1] != ids[0]+1 {
		t.Fatalf("LastInsertId gave %v", ids)
	}
	res, err := db.W.ExecContext(ctx, `INSERT OR IGNORE INTO notify_fanout(type, actor_id, subject_id, body, created_at) VALUES ('new_upload', 1, 2, '{}', 1)`)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id <= 0 {
		t.Fatalf("LastInsertId %d", id)
	}
	if res, err = db.W.ExecContext(ctx, `INSERT OR IGNORE INTO notify_fanout(type, actor_id, subject_id, body, created_at) VALUES ('new_upload', 1, 2, '{}', 1)`); err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 0 {
		t.Fatalf("an ignored insert affected %d rows", n)
	}

	// Flags are integers: bool arguments become 0/1, and bool results
	// scan into an int (as SQLite's do) and into a bool.
	if _, err := db.W.ExecContext(ctx, `INSERT INTO notify_preferences(user_id, type, channel, enabled) VALUES (?, 'comment', 'web', ?)`, 1, true); err != nil {
		t.Fatal(err)
	}
	var enabled, some int
	var yes bool
	err = db.R.QueryRowContext(ctx, `SELECT enabled, EXISTS(SELECT 1 FROM users), EXISTS(SELECT 1 FROM users) FROM notify_preferences WHERE user_id = ? AND enabled = ?`, 1, true).Scan(&enabled, &some, &yes)
	if err != nil || enabled != 1 || some != 1 || !yes {
		t.Fatalf("flags: %d %d %v, %v", enabled, some, yes, err)
	}

	// Status: engine, version, row counts; the password is not shown.
	st, err := db.Status(ctx, strings.Replace(url, "postgres@", "postgres:pw-secret@", 1))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{}
	for _, tb := range st.Tables {
		rows[tb.Name] = tb.Rows
	}
	if st.Engine != sqlstore.Postgres || st.Version < 9 || rows["users"] != 1 || rows["notify_emails"] != 2 || strings.Contains(st.URL, "pw-secret") || len(st.Replicas) != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// TestPostgresReplicaStatus: Status lists a streaming replica and its lag.
func TestPostgresReplicaStatus(t *testing.T) {
	ctx := context.Background()
	c := testenv.StartPGCluster(t, 1)
	db, err := sqlstore.OpenPostgres(ctx, c.Primary.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.Status(ctx, c.Primary.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 1 || st.Replicas[0].State != "streaming" || st.Replicas[0].LagBytes < 0 {
		t.Fatalf("replicas: %+v", st.Replicas)
	}
}

func TestURLs(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:hunter2@db:5432/bp?sslmode=disable": "postgres://u:REDACTED@db:5432/bp?sslmode=disable",
		"postgresql://u@db/bp?password=hunter2":           "postgresql://u@db/bp?password=REDACTED",
		"sqlite:/var/lib/blueprint/blueprint.db":          "sqlite:/var/lib/blueprint/blueprint.db",
	} {
		if got := sqlstore.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	ctx := context.Background()
	if _, err := sqlstore.OpenURL(ctx, "mysql://x", ""); err == nil {
		t.Error("OpenURL took mysql://")
	}
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sqlstore.OpenURL(ctx, "sqlite:"+path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect != sqlstore.SQLite || db.Path() != path {
		t.Fatalf("OpenURL(sqlite:…): %s %s", db.Dialect, db.Path())
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

// TestPostgresConcurrentOpen: processes starting together on a fresh
// database all migrate and create their extra tables without a race.
func TestPostgresConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	url := testenv.StartPostgres(t, false)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			db, err := sqlstore.OpenPostgres(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.CreateSchema(ctx, `CREATE TABLE IF NOT EXISTS extra (k TEXT PRIMARY KEY)`, `CREATE INDEX IF NOT EXISTS extra_k ON extra(k)`)
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestOpenURLWithReplicasNeedsPostgres(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	for _, tc := range []struct{ url, replica, want string }{
		{"sqlite:" + path, "postgres://h/db", "needs a postgres://"},
		{"postgres://127.0.0.1:1/db", "mysql://h/db", "database.replicas[0]"},
	} {
		_, err := sqlstore.OpenURLWith(ctx, tc.url, "", sqlstore.Options{Replicas: []string{tc.replica}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenURLWith(%q, replicas %q) = %v, want an error naming %q", tc.url, tc.replica, err, tc.want)
		}
	}
	// Without replicas, Read is the reader pool whatever the context says.
	db, err := sqlstore.OpenURLWith(ctx, "sqlite:"+path, "", sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.HasReplicas() || db.Read(sqlstore.WithReplicaReads(ctx, 5)) != db.R || db.Routing() != nil {
		t.Error("a store without replicas routes reads")
	}
}
