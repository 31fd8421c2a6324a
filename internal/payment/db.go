package payment

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Dialect is the SQL engine under the payment store. Statements are
// written once with ? placeholders and portable SQL; the dialect rewrites
// placeholders and adds row locks where the engine needs them.
type Dialect int

// Dialects.
const (
	// SQLite is the embedded store (sqlstore): one writer connection, so
	// every write transaction is serial and needs no row locks. The schema
	// is migration 0005_payment.sql of internal/sqlstore.
	SQLite Dialect = iota
	// Postgres is PostgreSQL through pgx's database/sql driver. Writes run
	// concurrently at READ COMMITTED; the schema is PostgresSchema, or
	// sqlstore's PostgreSQL migrations when the DB is the platform store.
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// OutboxFunc writes a domain event in tx, the transaction of the change
// that caused it (outbox.Insert for the SQLite store).
type OutboxFunc func(ctx context.Context, tx *sql.Tx, kind string, subject int64, payload any) error

// DB is the SQL store the payment service keeps its state in. W takes the
// writes (for SQLite, sqlstore's single writer connection); R serves reads
// and may be W.
type DB struct {
	W, R    *sql.DB
	Dialect Dialect
	// Outbox writes events; nil means PostgresOutbox on Postgres and an
	// error on SQLite (pass outbox.Insert).
	Outbox OutboxFunc

	rebound sync.Map // query text -> rebound text (Postgres)
	stmtsW  sync.Map // query text -> *sql.Stmt on W (SQLite)
	stmtsR  sync.Map // query text -> *sql.Stmt on R (SQLite)
	// toPrepare holds writer queries first seen inside a transaction:
	// they are prepared after it ends, when the single writer connection
	// is free (preparing during it would wait for that connection forever).
	toPrepare sync.Map
}

// stmt returns query prepared once on pool (SQLite only: compiling a
// statement costs about as much as running it there; pgx caches prepared
// statements per connection by itself).
func (db *DB) stmt(ctx context.Context, cache *sync.Map, pool *sql.DB, query string) (*sql.Stmt, error) {
	if v, ok := cache.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if v, loaded := cache.LoadOrStore(query, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

// Close releases the prepared statements (not the pools, which the caller
// owns).
func (db *DB) Close() error {
	for _, m := range []*sync.Map{&db.stmtsW, &db.stmtsR} {
		m.Range(func(k, v any) bool {
			v.(*sql.Stmt).Close()
			m.Delete(k)
			return true
		})
	}
	return nil
}

// q rewrites a query written with ? placeholders for the dialect.
func (db *DB) q(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	if v, ok := db.rebound.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	out := b.String()
	db.rebound.Store(query, out)
	return out
}

// forUpdate is the row-lock suffix of a SELECT that guards a
// read-check-write on Postgres; SQLite's writer is serial already.
func (db *DB) forUpdate() string {
	if db.Dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// tx runs fn in a write transaction, committing when fn returns nil. On
// PostgreSQL a serialization failure or deadlock is retried.
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := db.tx1(ctx, fn)
		if err == nil || db.Dialect != Postgres || attempt >= 4 || !retryablePG(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
}

func (db *DB) tx1(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("payment: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("payment: commit: %w", err)
	}
	db.prepareSeen(ctx)
	return nil
}

// prepareSeen prepares the writer queries seen in transactions so far.
func (db *DB) prepareSeen(ctx context.Context) {
	db.toPrepare.Range(func(k, _ any) bool {
		db.toPrepare.Delete(k)
		db.stmt(ctx, &db.stmtsW, db.W, k.(string))
		return true
	})
}

// writerStmt returns the prepared writer statement for query inside tx,
// or nil when it is not prepared yet (the caller runs the text).
func (db *DB) writerStmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if v, ok := db.stmtsW.Load(query); ok {
		return tx.StmtContext(ctx, v.(*sql.Stmt))
	}
	db.toPrepare.Store(query, struct{}{})
	return nil
}

// retryablePG reports SQLSTATE 40001 (serialization failure) and 40P01
// (deadlock detected), found in the error text so that this package needs
// no import of the driver.
func retryablePG(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 40001") || strings.Contains(s, "SQLSTATE 40P01")
}

func (db *DB) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if db.Dialect == SQLite {
		if st := db.writerStmt(ctx, tx, query); st != nil {
			return st.ExecContext(ctx, args...)
		}
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.ExecContext(ctx, db.q(query), args...)
}

func (db *DB) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if db.Dialect == SQLite {
		if tx == nil {
			if st, err := db.stmt(ctx, &db.stmtsR, db.R, query); err == nil {
				return st.QueryRowContext(ctx, args...)
			}
			return db.R.QueryRowContext(ctx, query, args...)
		}
		if st := db.writerStmt(ctx, tx, query); st != nil {
			return st.QueryRowContext(ctx, args...)
		}
		return tx.QueryRowContext(ctx, query, args...)
	}
	if tx == nil {
		return db.R.QueryRowContext(ctx, db.q(query), args...)
	}
	return tx.QueryRowContext(ctx, db.q(query), args...)
}

func (db *DB) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if db.Dialect == SQLite {
		if tx == nil {
			st, err := db.stmt(ctx, &db.stmtsR, db.R, query)
			if err != nil {
				return db.R.QueryContext(ctx, query, args...)
			}
			return st.QueryContext(ctx, args...)
		}
		if st := db.writerStmt(ctx, tx, query); st != nil {
			return st.QueryContext(ctx, args...)
		}
		return tx.QueryContext(ctx, query, args...)
	}
	if tx == nil {
		return db.R.QueryContext(ctx, db.q(query), args...)
	}
	return tx.QueryContext(ctx, db.q(query), args...)
}

func (db *DB) event(ctx context.Context, tx *sql.Tx, kind string, subject int64, payload any) error {
	if db.Outbox != nil {
		return db.Outbox(ctx, tx, kind, subject, payload)
	}
	if db.Dialect == Postgres {
		return PostgresOutbox(ctx, tx, kind, subject, payload)
	}
	return errors.New("payment: no outbox configured for the SQLite store")
}

// postgresEvents is the events table of the standalone PostgreSQL store
// (the platform store has its own, from sqlstore's migrations).
//
//go:embed postgres.sql
var postgresEvents string

// PostgresSchema returns the payment store's schema on PostgreSQL: the
// events table of the outbox and then sqlstore's PostgreSQL migration
// 0005_payment.sql — the same tables, constraints and append-only triggers
// as the SQLite migration, and the same file the platform store applies.
// Every statement is idempotent (IF NOT EXISTS / OR REPLACE).
func PostgresSchema() (string, error) {
	body, err := fs.ReadFile(sqlstore.MigrationFiles(), "migrations/postgres/0005_payment.sql")
	if err != nil {
		return "", fmt.Errorf("payment: postgres schema: %w", err)
	}
	return postgresEvents + "\n" + string(body), nil
}

// postgresSchemaLock serialises schema creation across processes:
// concurrent CREATE ... IF NOT EXISTS can fail on PostgreSQL.
const postgresSchemaLock = 0x7061796d656e74 // "payment"

// MigratePostgres creates the payment schema (PostgresSchema) on a
// PostgreSQL database of its own. The platform store needs no call: its
// migrations include the payment tables.
func MigratePostgres(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("payment: postgres schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(postgresSchemaLock)); err != nil {
		return fmt.Errorf("payment: postgres schema: %w", err)
	}
	schema, err := PostgresSchema()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("payment: postgres schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("payment: postgres schema: %w", err)
	}
	return nil
}

// PostgresOutbox writes an event into the events table of PostgresSchema,
// with the same columns as the SQLite outbox.
func PostgresOutbox(ctx context.Context, tx *sql.Tx, kind string, subject int64, payload any) error {
	data := []byte("{}")
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("payment: %s payload: %w", kind, err)
		}
		data = b
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events(kind, subject_id, payload, created_at) VALUES ($1, $2, $3, $4)`,
		kind, subject, string(data), time.Now().Unix()); err != nil {
		return fmt.Errorf("payment: event %s: %w", kind, err)
	}
	return nil
}

// ms is the store's time unit: Unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
