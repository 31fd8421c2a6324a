// Package sqlstore is Blueprint's SQL store. The embedded engine is SQLite
// (modernc.org/sqlite, pure Go) in WAL mode: one writer connection whose
// transactions start IMMEDIATE, so two writers never deadlock on a lock
// upgrade, and a pool of readers that never block it. Schema changes are
// versioned migrations embedded in the binary and applied at open.
//
// Several processes on one machine may open the same database file (the
// worker role runs as its own process); SQLite's locking and the busy
// timeout serialise their writes. OpenPostgres opens the same type on
// PostgreSQL, where the services' SQLite-dialect SQL is adapted per
// connection (see Rewrite); package migrate moves a SQLite store onto it.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/blueprint-media/blueprint/internal/sqlstore/pgrepl"
)

//go:embed migrations/*.sql migrations/postgres/*.sql
var migrations embed.FS

// MigrationFiles returns the embedded migrations (migrations/*.sql for
// SQLite, migrations/postgres/*.sql for PostgreSQL).
func MigrationFiles() fs.FS { return migrations }

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// ErrNotFound is returned (wrapped) when a row does not exist.
var ErrNotFound = errors.New("sqlstore: not found")

// DB is an open store: W for writes (one connection), R for reads.
type DB struct {
	W       *sql.DB
	R       *sql.DB
	Dialect string // SQLite or Postgres
	path    string
	repl    *pgrepl.Router // with database.replicas: routes Read (replicas.go)
}

// Open opens (creating if needed) the SQLite database at path and applies
// pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	dsn := func(txlock string) string {
		q := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(NORMAL)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", txlock)
		return "file:" + path + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn("immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn("deferred"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	db := &DB{W: w, R: r, Dialect: SQLite, path: path}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenPostgres opens the store on the PostgreSQL server at url and applies
// pending migrations (migrations/postgres). The services' SQL — written in
// SQLite's dialect — is rewritten per query (see Rewrite).
func OpenPostgres(ctx context.Context, url string) (*DB, error) {
	return openPostgresStore(ctx, url, nil)
}

// openPostgresStore is OpenPostgres with the queries' latency observed.
func openPostgresStore(ctx context.Context, url string, observe prometheus.Observer) (*DB, error) {
	pool, err := openPostgres(url, observe)
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(32)
	pool.SetMaxIdleConns(8)
	db := &DB{W: pool, R: pool, Dialect: Postgres}
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("sqlstore: connect to PostgreSQL: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	var repl error
	if db.repl != nil {
		repl = db.repl.Close()
	}
	if db.R == db.W {
		return errors.Join(db.W.Close(), repl)
	}
	return errors.Join(db.W.Close(), db.R.Close(), repl)
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.W.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	return nil
}

// Tx runs fn in a write transaction and commits it when fn returns nil.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	return nil
}

// Version returns the newest applied migration.
func (db *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := db.R.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// migrationLock is the PostgreSQL advisory lock that serialises schema
// changes across processes: concurrent CREATE … IF NOT EXISTS statements
// can fail on PostgreSQL.
const migrationLock = 7265626

// CreateSchema runs idempotent DDL (CREATE TABLE IF NOT EXISTS …) that a
// component keeps outside the migrations, in one transaction; on
// PostgreSQL under the migrations' advisory lock, so processes starting
// together do not race.
func (db *DB) CreateSchema(ctx context.Context, stmts ...string) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if db.Dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
				return fmt.Errorf("sqlstore: schema lock: %w", err)
			}
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("sqlstore: schema: %w", err)
			}
		}
		return nil
	})
}

func (db *DB) migrate(ctx context.Context) error {
	if err := db.CreateSchema(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))`); err != nil {
		return fmt.Errorf("sqlstore: migrations table: %w", err)
	}
	dir := "migrations"
	if db.Dialect == Postgres {
		dir = "migrations/postgres"
	}
	files, err := fs.Glob(migrations, dir+"/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sql")
		num, _, _ := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("sqlstore: migration %s: name must start with a number", f)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return err
		}
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			if db.Dialect == Postgres { // processes starting together migrate one at a time
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("sqlstore: migration %s: %w", name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name) VALUES (?, ?)`, version, name)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
