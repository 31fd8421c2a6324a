package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// NewPostgres returns a Locker backed by a lease table in PostgreSQL at dsn.
// Expiry and renewal use the server clock (clock_timestamp()), so client
// clocks do not matter. Every statement is a single autocommit statement, so
// a paused client never holds a row lock, and no session state (advisory
// locks) is used, so it works behind PgBouncer in transaction mode. The
// Locker keeps up to opts.MaxConns connections (default 4); Close closes
// them. Across processes waiters poll with jittered backoff, so FIFO order
// holds within a process but is approximate between processes.
func NewPostgres(ctx context.Context, dsn string, opts Options) (Locker, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("lock: postgres dsn: %w", err)
	}
	n := opts.MaxConns
	if n <= 0 {
		n = 4
	}
	p := &pgPool{cfg: cfg, idle: make(chan *pgx.Conn, n), slots: make(chan struct{}, n)}
	if err := p.createSchema(ctx, postgresDialect().schema); err != nil {
		p.close()
		return nil, fmt.Errorf("lock: create postgres schema: %w", err)
	}
	return newSQLLocker(p, postgresDialect(), opts)
}

// schemaLockKey is the advisory lock that serialises schema creation:
// concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL.
const schemaLockKey = 0x626c75657072696e // "bluepri"

func (p *pgPool) createSchema(ctx context.Context, stmts []string) error {
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLockKey)); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	p.put(c, err)
	return err
}

// pgPool is a minimal connection pool: pgxpool would need a module this
// repository does not require yet.
type pgPool struct {
	cfg   *pgx.ConnConfig
	idle  chan *pgx.Conn
	slots chan struct{} // one token per open connection
}

func (p *pgPool) get(ctx context.Context) (*pgx.Conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case p.slots <- struct{}{}:
		c, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pgPool) put(c *pgx.Conn, err error) {
	if err != nil && (c.IsClosed() || !errors.As(err, new(*pgconn.PgError))) {
		c.Close(context.Background())
		<-p.slots
		return
	}
	p.idle <- c
}

func (p *pgPool) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	c, err := p.get(ctx)
	if err != nil {
		return 0, err
	}
	var v int64
	err = c.QueryRow(ctx, q, args...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		p.put(c, nil)
		return 0, errNoRow
	}
	p.put(c, err)
	return v, err
}

func (p *pgPool) exec(ctx context.Context, q string, args ...any) (int64, error) {
	c, err := p.get(ctx)
	if err != nil {
		return 0, err
	}
	tag, err := c.Exec(ctx, q, args...)
	p.put(c, err)
	return tag.RowsAffected(), err
}

func (p *pgPool) close() error {
	for {
		select {
		case c := <-p.idle:
			c.Close(context.Background())
			<-p.slots
		default:
			return nil
		}
	}
}
