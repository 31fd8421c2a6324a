package pgrepl

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// commitSQL commits the open transaction and reads the WAL insert position
// in the same simple-protocol message, so one round trip. PostgreSQL runs
// the statements in order: the COMMIT ends the explicit transaction block
// (its commit record is inserted, and with synchronous_commit on flushed)
// before the SELECT runs in an implicit transaction of its own. The insert
// position is at or after the end of the commit record whatever
// synchronous_commit is; pg_current_wal_lsn() (the write position) could
// still be before it when the commit was asynchronous.
const commitSQL = "COMMIT; SELECT pg_current_wal_insert_lsn()"

// pgxConn is what a pgx database/sql connection offers (*stdlib.Conn and
// the types that embed it).
type pgxConn interface {
	driver.Conn
	Conn() *pgx.Conn
}

// Connector wraps a connector of pgx database/sql connections
// (stdlib.GetConnector, or one whose connections embed *stdlib.Conn) so
// that a transaction's commit also fetches the WAL position after it in
// the same round trip; Router.Write then needs no query of its own for the
// LSN. Pools opened by Config.Open may use it; the default pools do.
func Connector(inner driver.Connector) driver.Connector { return connector{inner} }

type connector struct{ inner driver.Connector }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := dc.(pgxConn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("pgrepl: connector: %T is not a pgx connection", dc)
	}
	return &conn{pgxConn: pc}, nil
}

func (c connector) Driver() driver.Driver { return c.inner.Driver() }

// conn forwards to the pgx connection, except that its transactions
// commit with commitSQL and leave the position in lsn.
type conn struct {
	pgxConn
	lsn LSN // WAL insert position after the last commit; 0 before one
}

func (c *conn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if p, ok := c.pgxConn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, q)
	}
	return c.pgxConn.Prepare(q)
}

func (c *conn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := c.pgxConn.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, q, args)
	}
	return nil, driver.ErrSkip
}

func (c *conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if e, ok := c.pgxConn.(driver.QueryerContext); ok {
		return e.QueryContext(ctx, q, args)
	}
	return nil, driver.ErrSkip
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.pgxConn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.pgxConn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.pgxConn.(driver.Validator); ok {
		return v.IsValid()
	}
	return !c.Conn().IsClosed()
}

func (c *conn) CheckNamedValue(v *driver.NamedValue) error {
	if ch, ok := c.pgxConn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (c *conn) Begin() (driver.Tx, error) { return c.BeginTx(context.Background(), driver.TxOptions{}) }

// BeginTx begins through the pgx connection (isolation, read-only) and
// returns a transaction that commits with commitSQL.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	if b, ok := c.pgxConn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.pgxConn.Begin()
	}
	if err != nil {
		return nil, err
	}
	c.lsn = 0
	return &lsnTx{Tx: tx, ctx: ctx, c: c}, nil
}

// lsnTx is a pgx transaction whose Commit also records the WAL position.
// Rollback is the pgx one.
type lsnTx struct {
	driver.Tx
	ctx context.Context
	c   *conn
}

// Commit sends commitSQL. A transaction that had failed commits as a
// rollback (command tag ROLLBACK): that is pgx.ErrTxCommitRollback, as
// with pgx's own Commit.
func (t *lsnTx) Commit() error {
	pg := t.c.Conn().PgConn()
	res, err := pg.Exec(t.ctx, commitSQL).ReadAll()
	if len(res) > 0 && res[0].Err == nil {
		switch res[0].CommandTag.String() {
		case "COMMIT":
			// Committed. Without a readable position (the SELECT failed),
			// Router.Write asks for it.
			if err == nil && len(res) == 2 && len(res[1].Rows) == 1 && len(res[1].Rows[0]) == 1 {
				t.c.lsn, _ = ParseLSN(string(res[1].Rows[0][0]))
			}
			return nil
		case "ROLLBACK":
			return pgx.ErrTxCommitRollback
		}
	}
	if err == nil {
		err = errors.New("pgrepl: commit: unexpected reply")
	}
	if pg.TxStatus() != 'I' {
		t.c.Conn().Close(t.ctx) // unknown state: not reused (pgx does the same)
	}
	return err
}
