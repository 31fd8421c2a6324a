package lock

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// FenceSchema creates the fences table used by FencedUpdate. It is valid on
// SQLite and PostgreSQL; NewSQLite and NewPostgres run it.
const FenceSchema = `CREATE TABLE IF NOT EXISTS fences (
	resource TEXT PRIMARY KEY,
	token BIGINT NOT NULL)`

// Execer is the part of *sql.Tx, *sql.DB and *sql.Conn the fence helpers use.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// fenceQuery works on SQLite (which reads $N as a numbered parameter) and
// PostgreSQL. On PostgreSQL the upsert locks the fence row even when the
// WHERE clause rejects the write, so concurrent writers serialise on it.
const fenceQuery = `INSERT INTO fences (resource, token) VALUES ($1, $2)
	ON CONFLICT (resource) DO UPDATE SET token = excluded.token
	WHERE fences.token <= excluded.token`

// FencedUpdate records that a write to resource is made under fencing token
// token. It succeeds when token is at least the highest token stored for
// resource (and stores it) and returns ErrStaleToken otherwise. Call it in
// the same transaction as the protected write, before it, and roll back on
// error: then a holder whose lease expired while it was paused cannot
// overwrite the work of a newer holder, whatever the clocks say.
//
// Equal tokens are accepted so a holder can write several times under one
// lease; resources must not be shared between different lock names, since
// tokens are only ordered per lock name.
func FencedUpdate(ctx context.Context, tx Execer, resource string, token uint64) error {
	if token == 0 || token > 1<<63-1 {
		return fmt.Errorf("lock: fence %s: invalid token %d", resource, token)
	}
	res, err := tx.ExecContext(ctx, fenceQuery, resource, int64(token))
	if err != nil {
		return fmt.Errorf("lock: fence %s: %w", resource, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("lock: fence %s: %w", resource, err)
	}
	if n == 0 {
		return fmt.Errorf("lock: fence %s token %d: %w", resource, token, ErrStaleToken)
	}
	return nil
}

// PgxExecer is the part of pgx.Tx and *pgx.Conn that FencedUpdatePgx uses.
type PgxExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// FencedUpdatePgx is FencedUpdate for a pgx transaction or connection.
func FencedUpdatePgx(ctx context.Context, tx PgxExecer, resource string, token uint64) error {
	if token == 0 || token > 1<<63-1 {
		return fmt.Errorf("lock: fence %s: invalid token %d", resource, token)
	}
	tag, err := tx.Exec(ctx, fenceQuery, resource, int64(token))
	if err != nil {
		return fmt.Errorf("lock: fence %s: %w", resource, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("lock: fence %s token %d: %w", resource, token, ErrStaleToken)
	}
	return nil
}

// FencedPut guards a write to an object store, which cannot check a fencing
// token itself. It advances the fence row of resource to token (failing
// with ErrStaleToken if a newer holder already wrote), runs put, and then
// checks the fence again: if a newer token was recorded while put ran, it
// returns ErrStaleToken so the caller knows its object may have raced with
// a newer holder's.
//
// Limits: the check and the put are not atomic. A holder paused between the
// first check and the end of put can still overwrite a newer holder's object
// at the same key; the second check reports that, but only to the stale
// writer. For strict safety write objects under a key that includes the
// token (for example "video/123/master@<token>") and publish the key with
// FencedUpdate in the same SQL transaction as the row that points to it:
// stale objects are then orphans that nobody reads and a sweeper deletes.
func FencedPut(ctx context.Context, db *sql.DB, resource string, token uint64, put func(ctx context.Context) error) error {
	if err := FencedUpdate(ctx, db, resource, token); err != nil {
		return err
	}
	if err := put(ctx); err != nil {
		return fmt.Errorf("lock: fenced put %s: %w", resource, err)
	}
	var stored int64
	err := db.QueryRowContext(ctx, `SELECT token FROM fences WHERE resource = $1`, resource).Scan(&stored)
	if err != nil {
		return fmt.Errorf("lock: fenced put %s: recheck: %w", resource, err)
	}
	if uint64(stored) > token {
		return fmt.Errorf("lock: fenced put %s: newer token %d recorded during put: %w", resource, stored, ErrStaleToken)
	}
	return nil
}
