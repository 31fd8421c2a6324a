package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// MoveOptions configures Move.
type MoveOptions struct {
	Shard int
	To    string
	// KeepSource keeps the shard's rows on the source cluster after the
	// flip (fenced: no write reaches them) so that an operator can compare
	// or roll back by moving the shard back; by default they are deleted.
	KeepSource bool
	// Schema holds the sharded tables (default "public"); Column is the
	// logical-shard column every sharded table carries (default "shard").
	// Sharded tables are the schema's ordinary tables that have Column.
	Schema, Column string
	// SyncTimeout bounds the initial copy and catch-up (default 1h).
	SyncTimeout time.Duration
	// PauseBudget bounds the cutover: if fencing, the target's replay of
	// the fenced source, the verification (unless VerifyAfterFlip) and the
	// sequence reset do not finish within it, or the checksums differ, the
	// cutover is undone and writes resume on the source (default 10s).
	PauseBudget time.Duration
	// VerifyAfterFlip moves the count and checksum comparison out of the
	// pause: the target's state is pinned by a repeatable-read snapshot
	// taken in the pause and compared with the fenced source after the
	// flip. The pause no longer grows with the shard's size, but a
	// mismatch can then no longer be undone automatically (the shard stays
	// on the target, the source rows are kept, the move is recorded as
	// verify-failed). Default: verify in the pause.
	VerifyAfterFlip bool
	// CatchUpLag is the marker round trip under which the cutover starts
	// (default 200ms): the pause waits for at most about one such lag.
	CatchUpLag time.Duration
	// Progress, if set, receives one call per step and periodic copy
	// progress.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress is one progress report of a move.
type Progress struct {
	Step    string // start, copy, catchup, pause, verify, flip, cleanup, done
	Msg     string
	Elapsed time.Duration
}

// TableCheck is one table's rows of the shard and their checksum (sum of
// the first 64 bits of md5 of each row's text form; order-independent).
type TableCheck struct {
	Table    string
	Rows     int64
	Checksum string
}

// MoveResult reports a finished move.
type MoveResult struct {
	Shard    int
	From, To string
	Resumed  bool
	Tables   []TableCheck
	Rows     int64         // rows of the shard moved, over all tables
	Copy     time.Duration // subscription created → initial copy done and caught up
	Pause    time.Duration // writes to the shard held: pause committed → flip committed
	Fence    time.Duration // part of Pause: fence triggers installed (waits for in-flight writes)
	CatchUp  time.Duration // part of Pause: target replayed the fenced source
	Verify   time.Duration // counts and checksums on both sides: part of Pause unless VerifyAfterFlip
	Version  int64         // map version of the flip
	Deleted  int64         // source rows deleted (0 with KeepSource)
	Sequence int           // sequences reset on the target
}

// RowsPerSecond is Rows over Copy.
func (r MoveResult) RowsPerSecond() float64 {
	if r.Copy <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Copy.Seconds()
}

// clusterDDL is what Move needs on every cluster: the fence set, the
// trigger function it installs, and the catch-up marker table.
const clusterDDL = `
CREATE TABLE IF NOT EXISTS blueprint_shard_fence (
	shard     integer PRIMARY KEY,
	fenced_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS blueprint_shard_marker (
	shard integer NOT NULL,
	token bigint NOT NULL,
	PRIMARY KEY (shard, token)
);
CREATE OR REPLACE FUNCTION blueprint_shard_fenced() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	RAISE EXCEPTION 'blueprint: logical shard is fenced on this cluster (moved or being moved); reload the shard map'
		USING ERRCODE = 'BP001';
END
$fn$;
`

type mover struct {
	opts     MoveOptions
	cat      *Catalog
	src, dst *sql.DB
	srcURL   string
	tables   []string // sanitized, schema-qualified
	name     string   // publication, subscription and slot name
	start    time.Time
	log      *slog.Logger
}

func (m *mover) progress(step, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.log.Info("shard: move", "shard", m.opts.Shard, "step", step, "msg", msg)
	if m.opts.Progress != nil {
		m.opts.Progress(Progress{Step: step, Msg: msg, Elapsed: time.Since(m.start)})
	}
}

// Move moves one logical shard to another cluster while the application
// keeps writing through Routers: it publishes the shard's rows on the
// source (row filter on the shard column), subscribes the target
// (copy_data), waits until the copy is done and caught up, then pauses the
// shard's writes (map state paused, version bump), fences the source
// (triggers that refuse the shard's writes, installed under a table lock
// that waits for in-flight writes), waits until the target has replayed a
// marker written after the fence, compares per-table counts and checksums,
// resets sequences, flips the map (version bump, writes resume on the
// target), drops the subscription and publication and deletes the source's
// rows unless KeepSource.
//
// Every step is idempotent and recorded in the catalog, so a Move that was
// killed is resumed by running it again with the same target (see README,
// failure modes); Abort undoes an unfinished move instead.
func Move(ctx context.Context, cat *Catalog, opts MoveOptions) (MoveResult, error) {
	if opts.Shard < 0 || opts.Shard >= Shards {
		return MoveResult{}, fmt.Errorf("%w: %d", ErrBadShard, opts.Shard)
	}
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if opts.Column == "" {
		opts.Column = "shard"
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = time.Hour
	}
	if opts.PauseBudget <= 0 {
		opts.PauseBudget = 10 * time.Second
	}
	if opts.CatchUpLag <= 0 {
		opts.CatchUpLag = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	res := MoveResult{Shard: opts.Shard, To: opts.To}
	unlock, err := cat.lockShard(ctx, opts.Shard)
	if err != nil {
		return res, err
	}
	defer unlock()
	mp, err := cat.Load(ctx)
	if err != nil {
		return res, err
	}
	if _, ok := mp.Clusters[opts.To]; !ok {
		return res, fmt.Errorf("%w: %q", ErrNoCluster, opts.To)
	}
	rec, err := cat.openMove(ctx, opts.Shard)
	if err != nil {
		return res, err
	}
	if rec != nil {
		if rec.To != opts.To {
			return res, fmt.Errorf("%w: shard %d to %s (rerun with --to %s, or abort it)", ErrMoveConflict, opts.Shard, rec.To, rec.To)
		}
		res.Resumed = true
	} else {
		if mp.Owner[opts.Shard] == opts.To {
			return res, &errs.Error{Kind: errs.Conflict, Msg: fmt.Sprintf("shard: shard %d is already on %s", opts.Shard, opts.To)}
		}
		if rec, err = cat.startMove(ctx, opts.Shard, mp.Owner[opts.Shard], opts.To); err != nil {
			return res, err
		}
	}
	res.From = rec.From
	m, err := newMover(ctx, cat, mp, rec.From, rec.To, opts)
	if err != nil {
		return res, err
	}
	defer m.close()
	if res.Resumed {
		m.progress("start", "resuming the move of shard %d from %s to %s (was at step %s)", opts.Shard, rec.From, rec.To, rec.Step)
	} else {
		m.progress("start", "moving shard %d from %s to %s over %d tables", opts.Shard, rec.From, rec.To, len(m.tables))
	}
	if mp.Owner[opts.Shard] != opts.To {
		if err := m.copyAndCutover(ctx, rec, &res); err != nil {
			return res, err
		}
	} else {
		m.progress("flip", "map already points at %s (version %d): finishing the cleanup", opts.To, mp.Version)
		res.Version = mp.Version
	}
	if err := cat.stepMove(ctx, rec.ID, "cleanup"); err != nil {
		return res, err
	}
	if err := m.cleanup(ctx, &res); err != nil {
		return res, err
	}
	if err := cat.finishMove(ctx, rec.ID, "done", res.Rows, res.Pause, nil); err != nil {
		return res, err
	}
	m.progress("done", "shard %d on %s: %d rows, pause %v, copy %.0f rows/s", opts.Shard, opts.To, res.Rows, res.Pause.Round(time.Microsecond), res.RowsPerSecond())
	return res, nil
}

func newMover(ctx context.Context, cat *Catalog, mp *Map, from, to string, opts MoveOptions) (*mover, error) {
	fc, ok := mp.Clusters[from]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoCluster, from)
	}
	tc := mp.Clusters[to]
	if fc.Primary == tc.Primary {
		return nil, &errs.Error{Kind: errs.Invalid, Msg: "shard: source and target clusters have the same primary URL"}
	}
	m := &mover{opts: opts, cat: cat, srcURL: fc.Primary, name: fmt.Sprintf("blueprint_shard_%d", opts.Shard), start: time.Now(), log: opts.Logger}
	var err error
	if m.src, err = sql.Open("pgx", fc.Primary); err != nil {
		return nil, fmt.Errorf("shard: source %s: %w", from, err)
	}
	if m.dst, err = sql.Open("pgx", tc.Primary); err != nil {
		m.src.Close()
		return nil, fmt.Errorf("shard: target %s: %w", to, err)
	}
	fail := func(err error) (*mover, error) { m.close(); return nil, err }
	var wal string
	if err := m.src.QueryRowContext(ctx, `SHOW wal_level`).Scan(&wal); err != nil {
		return fail(fmt.Errorf("shard: source %s: %w", from, err))
	}
	if wal != "logical" {
		return fail(&errs.Error{Kind: errs.Invalid, Msg: fmt.Sprintf("shard: source %s has wal_level=%s; set wal_level=logical and restart it", from, wal)})
	}
	for _, db := range []*sql.DB{m.src, m.dst} {
		if err := ensureClusterSchema(ctx, db); err != nil {
			return fail(err)
		}
	}
	srcTables, err := shardedTables(ctx, m.src, opts.Schema, opts.Column)
	if err != nil {
		return fail(err)
	}
	dstTables, err := shardedTables(ctx, m.dst, opts.Schema, opts.Column)
	if err != nil {
		return fail(err)
	}
	if len(srcTables) == 0 {
		return fail(&errs.Error{Kind: errs.Invalid, Msg: fmt.Sprintf("shard: no table in schema %s of %s has a %s column", opts.Schema, from, opts.Column)})
	}
	have := map[string]bool{}
	for _, t := range dstTables {
		have[t] = true
	}
	for _, t := range srcTables {
		if !have[t] {
			return fail(&errs.Error{Kind: errs.Invalid, Msg: fmt.Sprintf("shard: table %s is missing on %s: apply the same migrations to every cluster first", t, to)})
		}
		if err := checkReplicaIdentity(ctx, m.src, t, opts.Column); err != nil {
			return fail(err)
		}
	}
	m.tables = srcTables
	return m, nil
}

func (m *mover) close() {
	m.src.Close()
	m.dst.Close()
}

func ensureClusterSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("shard: cluster schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(72616402)`); err != nil {
		return fmt.Errorf("shard: cluster schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, clusterDDL); err != nil {
		return fmt.Errorf("shard: cluster schema: %w", err)
	}
	return tx.Commit()
}

// shardedTables lists the schema's ordinary tables with the shard column,
// schema-qualified and quoted, leaving out the package's own tables.
func shardedTables(ctx context.Context, db *sql.DB, schema, column string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname NOT LIKE 'blueprint\_shard\_%'
		ORDER BY c.relname`, schema, column)
	if err != nil {
		return nil, fmt.Errorf("shard: list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("shard: list tables: %w", err)
		}
		out = append(out, pgx.Identifier{schema, t}.Sanitize())
	}
	return out, rows.Err()
}

// checkReplicaIdentity refuses tables whose replica identity does not
// contain the shard column: PostgreSQL would then refuse every UPDATE and
// DELETE on the table while the row-filtered publication exists.
func checkReplicaIdentity(ctx context.Context, db *sql.DB, table, column string) error {
	var ident string
	var ok bool
	err := db.QueryRowContext(ctx, `SELECT c.relreplident::text, EXISTS (
			SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
			WHERE i.indrelid = c.oid AND a.attname = $2
			  AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
		FROM pg_class c WHERE c.oid = $1::regclass`, table, column).Scan(&ident, &ok)
	if err != nil {
		return fmt.Errorf("shard: replica identity of %s: %w", table, err)
	}
	if ident == "f" || ok {
		return nil
	}
	return &errs.Error{Kind: errs.Invalid, Msg: fmt.Sprintf("shard: the primary key (replica identity) of %s must include %s, or UPDATE/DELETE fail during a move", table, column)}
}

func (m *mover) copyAndCutover(ctx context.Context, rec *MoveRecord, res *MoveResult) error {
	o := m.opts
	// A target without our subscription must not hold rows of the shard:
	// they are left over from an aborted move or kept after an earlier
	// move away, and the copy would collide with them.
	var subExists bool
	if err := m.dst.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)`, m.name).Scan(&subExists); err != nil {
		return fmt.Errorf("shard: target: %w", err)
	}
	if !subExists {
		n, err := deleteShardRows(ctx, m.dst, append(m.tables, "blueprint_shard_marker"), o.Column, o.Shard)
		if err != nil {
			return err
		}
		if n > 0 {
			m.progress("copy", "deleted %d stale rows of shard %d on %s", n, o.Shard, o.To)
		}
		if err := m.createPublication(ctx); err != nil {
			return err
		}
		// CREATE SUBSCRIPTION cannot run in a transaction block.
		q := fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = true)`,
			pgx.Identifier{m.name}.Sanitize(), quoteLiteral(m.srcURL), pgx.Identifier{m.name}.Sanitize())
		if _, err := m.dst.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("shard: create subscription on %s: %w", o.To, err)
		}
	} else if err := m.createPublication(ctx); err != nil {
		return err
	}
	if err := m.cat.stepMove(ctx, rec.ID, "copy"); err != nil {
		return err
	}
	t0 := time.Now()
	m.progress("copy", "subscription %s created on %s; copying", m.name, o.To)
	if err := m.waitSync(ctx); err != nil {
		return err
	}
	// Catch up: marker round trips until one is fast enough that the
	// pause will wait for about that long.
	for i := 0; ; i++ {
		lag, err := m.roundTrip(ctx, o.SyncTimeout)
		if err != nil {
			return err
		}
		if lag <= o.CatchUpLag || i >= 50 {
			m.progress("catchup", "caught up: marker round trip %v", lag.Round(time.Microsecond))
			break
		}
	}
	res.Copy = time.Since(t0)
	if err := m.cat.stepMove(ctx, rec.ID, "cutover"); err != nil {
		return err
	}
	return m.cutover(ctx, rec, res)
}

func (m *mover) createPublication(ctx context.Context) error {
	var exists bool
	if err := m.src.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, m.name).Scan(&exists); err != nil {
		return fmt.Errorf("shard: source: %w", err)
	}
	if exists {
		return nil
	}
	col := pgx.Identifier{m.opts.Column}.Sanitize()
	parts := make([]string, 0, len(m.tables)+1)
	for _, t := range m.tables {
		parts = append(parts, fmt.Sprintf("TABLE %s WHERE (%s = %d)", t, col, m.opts.Shard))
	}
	parts = append(parts, fmt.Sprintf("TABLE blueprint_shard_marker WHERE (shard = %d)", m.opts.Shard))
	q := fmt.Sprintf(`CREATE PUBLICATION %s FOR %s`, pgx.Identifier{m.name}.Sanitize(), strings.Join(parts, ", "))
	if _, err := m.src.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("shard: create publication: %w", err)
	}
	return nil
}

// waitSync waits until every table of the subscription is ready (initial
// copy done, apply worker in charge), reporting progress.
func (m *mover) waitSync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.SyncTimeout)
	defer cancel()
	want := len(m.tables) + 1
	lastReport := time.Now()
	for {
		var total, notReady int
		var errCount int64
		err := m.dst.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE sr.srsubstate <> 'r'),
				coalesce((SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats st WHERE st.subname = $1), 0)
			FROM pg_subscription s JOIN pg_subscription_rel sr ON sr.srsubid = s.oid WHERE s.subname = $1`, m.name).Scan(&total, &notReady, &errCount)
		if err != nil {
			return fmt.Errorf("shard: subscription state: %w", err)
		}
		if errCount > 0 {
			return fmt.Errorf("shard: subscription %s on %s reports %d errors (see the target's server log); fix and rerun, or abort", m.name, m.opts.To, errCount)
		}
		if total >= want && notReady == 0 {
			return nil
		}
		if time.Since(lastReport) >= 2*time.Second {
			lastReport = time.Now()
			src, _ := countRows(ctx, m.src, m.tables, m.opts.Column, m.opts.Shard)
			dst, _ := countRows(ctx, m.dst, m.tables, m.opts.Column, m.opts.Shard)
			m.progress("copy", "%d of %d tables ready; rows %d / %d", total-notReady, want, dst, src)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shard: initial copy: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// roundTrip writes a marker row of the shard on the source and waits
// until the target shows it: everything the source committed before the
// marker is then applied on the target (the apply worker applies in
// commit order).
func (m *mover) roundTrip(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	token := time.Now().UnixNano()
	t0 := time.Now()
	if _, err := m.src.ExecContext(ctx, `INSERT INTO blueprint_shard_marker (shard, token) VALUES ($1, $2)`, m.opts.Shard, token); err != nil {
		return 0, fmt.Errorf("shard: marker: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var ok bool
		if err := m.dst.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM blueprint_shard_marker WHERE shard = $1 AND token = $2)`, m.opts.Shard, token).Scan(&ok); err != nil {
			return 0, fmt.Errorf("shard: marker on target: %w", err)
		}
		if ok {
			return time.Since(t0), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("shard: target did not replay the marker: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (m *mover) cutover(ctx context.Context, rec *MoveRecord, res *MoveResult) error {
	o := m.opts
	t0 := time.Now()
	if _, err := m.cat.setShard(ctx, o.Shard, rec.From, StatePaused); err != nil {
		return err
	}
	m.progress("pause", "writes to shard %d paused", o.Shard)
	undo := func(cause error) error {
		// Put writes back on the source; the subscription stays, so a rerun
		// retries the cutover.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := setFence(uctx, m.src, m.tables, o.Column, o.Shard, false)
		if _, err2 := m.cat.setShard(uctx, o.Shard, rec.From, StateActive); err == nil {
			err = err2
		}
		m.progress("pause", "cutover undone, writes resume on %s after %v: %v", rec.From, time.Since(t0).Round(time.Millisecond), cause)
		if err != nil {
			return fmt.Errorf("%w (and undoing the pause failed: %w; rerun or abort the move)", cause, err)
		}
		return cause
	}
	// The budget bounds fence, catch-up, verification and sequences; the
	// target snapshot below lives on ctx (a cancelled context would roll it back).
	pctx, cancel := context.WithTimeout(ctx, o.PauseBudget)
	defer cancel()
	if err := setFence(pctx, m.src, m.tables, o.Column, o.Shard, true); err != nil {
		return undo(err)
	}
	res.Fence = time.Since(t0)
	t1 := time.Now()
	if _, err := m.roundTrip(pctx, o.PauseBudget); err != nil {
		return undo(err)
	}
	res.CatchUp = time.Since(t1)
	var snap *sql.Tx
	if o.VerifyAfterFlip {
		// The target's state of the shard now equals the fenced source's;
		// a repeatable-read snapshot keeps it for the verification after
		// the flip, while new writes land on the target.
		var err error
		if snap, err = m.dst.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}); err != nil {
			return undo(fmt.Errorf("shard: target snapshot: %w", err))
		}
		defer snap.Rollback()
		var one int
		if err := snap.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
			return undo(fmt.Errorf("shard: target snapshot: %w", err))
		}
	} else {
		t2 := time.Now()
		if err := m.verify(pctx, m.dst, res); err != nil {
			return undo(err)
		}
		res.Verify = time.Since(t2)
	}
	n, err := resetSequences(pctx, m.src, m.dst, m.tables)
	if err != nil {
		return undo(err)
	}
	res.Sequence = n
	// The target may carry a fence for this shard from an earlier move away.
	if err := setFence(pctx, m.dst, m.tables, o.Column, o.Shard, false); err != nil {
		return undo(err)
	}
	v, err := m.cat.setShard(ctx, o.Shard, o.To, StateActive)
	if err != nil {
		return undo(err)
	}
	res.Pause = time.Since(t0)
	res.Version = v
	if err := m.cat.stepMove(ctx, rec.ID, "flipped"); err != nil {
		return err
	}
	verified := fmt.Sprintf("verify %v of %d rows", res.Verify.Round(time.Microsecond), res.Rows)
	if snap != nil {
		verified = "verify after the flip"
	}
	m.progress("flip", "map version %d: shard %d on %s; pause %v (fence %v, catch-up %v, %s)",
		v, o.Shard, o.To, res.Pause.Round(time.Microsecond), res.Fence.Round(time.Microsecond),
		res.CatchUp.Round(time.Microsecond), verified)
	if snap != nil {
		t2 := time.Now()
		err := m.verify(ctx, snap, res)
		res.Verify = time.Since(t2)
		if err != nil {
			// Too late to undo: the target has taken writes. Keep the
			// fenced source rows for the investigation and close the move.
			err = fmt.Errorf("%w (after the flip: shard %d stays on %s, source rows kept on %s)", err, o.Shard, o.To, rec.From)
			m.progress("verify", "%v", err)
			if derr := m.dropReplication(context.WithoutCancel(ctx)); derr != nil {
				m.log.Warn("shard: drop replication after a failed verification", "err", derr)
			}
			if ferr := m.cat.finishMove(context.WithoutCancel(ctx), rec.ID, "verify-failed", res.Rows, res.Pause, err); ferr != nil {
				return fmt.Errorf("%w; recording it: %w", err, ferr)
			}
			return err
		}
		m.progress("verify", "%d rows equal on both sides (verified after the flip in %v)", res.Rows, res.Verify.Round(time.Millisecond))
	}
	return nil
}

// queryRower is a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// verify compares the shard's per-table counts and checksums on the
// source and on dst (the target's pool, or a snapshot of it).
func (m *mover) verify(ctx context.Context, dst queryRower, res *MoveResult) error {
	o := m.opts
	var srcSum, dstSum []TableCheck
	_, dstIsTx := dst.(*sql.Tx)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { srcSum, err = checksums(gctx, m.src, m.tables, o.Column, o.Shard, true); return })
	g.Go(func() (err error) { dstSum, err = checksums(gctx, dst, m.tables, o.Column, o.Shard, !dstIsTx); return })
	if err := g.Wait(); err != nil {
		return err
	}
	res.Rows = 0
	for i := range srcSum {
		if srcSum[i] != dstSum[i] {
			return fmt.Errorf("shard: verify %s: source %d rows sum %s, target %d rows sum %s",
				srcSum[i].Table, srcSum[i].Rows, srcSum[i].Checksum, dstSum[i].Rows, dstSum[i].Checksum)
		}
		res.Rows += srcSum[i].Rows
	}
	res.Tables = srcSum
	return nil
}

func (m *mover) cleanup(ctx context.Context, res *MoveResult) error {
	o := m.opts
	if err := m.dropReplication(ctx); err != nil {
		return err
	}
	// The source stays fenced for this shard: a router still on the old
	// map gets BP001 there, reloads and writes to the target.
	if o.KeepSource {
		m.progress("cleanup", "subscription and publication dropped; source rows kept (fenced)")
		return nil
	}
	n, err := deleteShardRows(ctx, m.src, m.tables, o.Column, o.Shard)
	if err != nil {
		return err
	}
	res.Deleted = n
	m.progress("cleanup", "subscription and publication dropped; %d source rows deleted", n)
	return nil
}

// dropReplication drops the move's subscription (and with it the slot on
// the source), its publication and its markers.
func (m *mover) dropReplication(ctx context.Context) error {
	o := m.opts
	var subExists bool
	if err := m.dst.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)`, m.name).Scan(&subExists); err != nil {
		return fmt.Errorf("shard: target: %w", err)
	}
	if subExists {
		// Drops the replication slot on the source too.
		if _, err := m.dst.ExecContext(ctx, `DROP SUBSCRIPTION IF EXISTS `+pgx.Identifier{m.name}.Sanitize()); err != nil {
			return fmt.Errorf("shard: drop subscription: %w", err)
		}
	}
	if _, err := m.src.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+pgx.Identifier{m.name}.Sanitize()); err != nil {
		return fmt.Errorf("shard: drop publication: %w", err)
	}
	for _, db := range []*sql.DB{m.src, m.dst} {
		if _, err := db.ExecContext(ctx, `DELETE FROM blueprint_shard_marker WHERE shard = $1`, o.Shard); err != nil {
			return fmt.Errorf("shard: markers: %w", err)
		}
	}
	return nil
}

// Abort undoes an unfinished move that has not flipped the map: it drops
// the subscription and publication, unfences the source, marks the shard
// active on the source and deletes the partial copy on the target. A move
// that already flipped cannot be aborted (rerun it to finish its cleanup,
// or move the shard back).
func Abort(ctx context.Context, cat *Catalog, shard int, opts MoveOptions) error {
	unlock, err := cat.lockShard(ctx, shard)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := cat.openMove(ctx, shard)
	if err != nil {
		return err
	}
	if rec == nil {
		return &errs.Error{Kind: errs.NotFound, Msg: fmt.Sprintf("shard: no unfinished move of shard %d", shard)}
	}
	mp, err := cat.Load(ctx)
	if err != nil {
		return err
	}
	if mp.Owner[shard] == rec.To {
		return &errs.Error{Kind: errs.Conflict, Msg: fmt.Sprintf("shard: the move of shard %d already flipped to %s; rerun it to finish", shard, rec.To)}
	}
	opts.Shard, opts.To = shard, rec.To
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if opts.Column == "" {
		opts.Column = "shard"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMover(ctx, cat, mp, rec.From, rec.To, opts)
	if err != nil {
		return err
	}
	defer m.close()
	if _, err := m.dst.ExecContext(ctx, `DROP SUBSCRIPTION IF EXISTS `+pgx.Identifier{m.name}.Sanitize()); err != nil {
		return fmt.Errorf("shard: drop subscription: %w", err)
	}
	if _, err := m.src.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+pgx.Identifier{m.name}.Sanitize()); err != nil {
		return fmt.Errorf("shard: drop publication: %w", err)
	}
	if err := setFence(ctx, m.src, m.tables, opts.Column, shard, false); err != nil {
		return err
	}
	if mp.State[shard] != StateActive {
		if _, err := cat.setShard(ctx, shard, rec.From, StateActive); err != nil {
			return err
		}
	}
	if _, err := deleteShardRows(ctx, m.dst, append(m.tables, "blueprint_shard_marker"), opts.Column, shard); err != nil {
		return err
	}
	if _, err := m.src.ExecContext(ctx, `DELETE FROM blueprint_shard_marker WHERE shard = $1`, shard); err != nil {
		return fmt.Errorf("shard: markers: %w", err)
	}
	m.progress("done", "move of shard %d to %s aborted; shard active on %s", shard, rec.To, rec.From)
	return cat.finishMove(ctx, rec.ID, "aborted", 0, 0, errors.New("aborted"))
}

// setFence adds the shard to (or removes it from) the cluster's fence set
// and then rebuilds the fence triggers of each sharded table from that set,
// one table per transaction under a SHARE ROW EXCLUSIVE lock on it. The
// lock waits for the transactions that are writing the table, so once the
// last table's transaction commits, every transaction that wrote a row of
// the shard has either committed or will be refused (BP001) at its next
// write of the shard and rolled back — also transactions that began
// earlier, since triggers are read from the catalog, not from a snapshot.
// Holding one table lock at a time, the fence cannot deadlock with writers
// that lock the tables in another order. Reads are not blocked.
func setFence(ctx context.Context, db *sql.DB, tables []string, column string, shard int, fenced bool) error {
	var err error
	if fenced {
		_, err = db.ExecContext(ctx, `INSERT INTO blueprint_shard_fence (shard) VALUES ($1) ON CONFLICT (shard) DO NOTHING`, shard)
	} else {
		_, err = db.ExecContext(ctx, `DELETE FROM blueprint_shard_fence WHERE shard = $1`, shard)
	}
	if err != nil {
		return fmt.Errorf("shard: fence set: %w", err)
	}
	for _, t := range tables {
		for attempt := 0; ; attempt++ {
			err = fenceTable(ctx, db, t, column)
			if err == nil {
				break
			}
			if attempt == 4 || ctx.Err() != nil {
				return err
			}
			time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
		}
	}
	return nil
}

func fenceTable(ctx context.Context, db *sql.DB, table, column string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("shard: fence: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
		return fmt.Errorf("shard: fence: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `LOCK TABLE `+table+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("shard: fence lock on %s: %w", table, err)
	}
	// Read under the lock: a concurrent fence of another shard on the same
	// table rebuilds after this one commits and then sees both shards.
	var set string
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(string_agg(shard::text, ',' ORDER BY shard), '') FROM blueprint_shard_fence`).Scan(&set); err != nil {
		return fmt.Errorf("shard: fence set: %w", err)
	}
	arr := "'{" + set + "}'::integer[]"
	col := pgx.Identifier{column}.Sanitize()
	stmts := []string{
		`DROP TRIGGER IF EXISTS blueprint_shard_fence_new ON ` + table,
		`DROP TRIGGER IF EXISTS blueprint_shard_fence_old ON ` + table,
	}
	if set != "" {
		stmts = []string{
			fmt.Sprintf(`CREATE OR REPLACE TRIGGER blueprint_shard_fence_new BEFORE INSERT OR UPDATE ON %s FOR EACH ROW WHEN (NEW.%s = ANY (%s)) EXECUTE FUNCTION blueprint_shard_fenced()`, table, col, arr),
			fmt.Sprintf(`CREATE OR REPLACE TRIGGER blueprint_shard_fence_old BEFORE UPDATE OR DELETE ON %s FOR EACH ROW WHEN (OLD.%s = ANY (%s)) EXECUTE FUNCTION blueprint_shard_fenced()`, table, col, arr),
		}
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("shard: fence trigger on %s: %w", table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("shard: fence commit: %w", err)
	}
	return nil
}

// checksums returns each table's row count and checksum for the shard,
// the tables queried concurrently. The checksum is the sum of
// hashtextextended(row::text, 0) over the shard's rows: order-independent,
// 64 bits per row, computed in one streaming scan.
func checksums(ctx context.Context, db queryRower, tables []string, column string, shard int, parallel bool) ([]TableCheck, error) {
	col := pgx.Identifier{column}.Sanitize()
	out := make([]TableCheck, len(tables))
	g, ctx := errgroup.WithContext(ctx)
	if !parallel {
		g.SetLimit(1)
	}
	for i, t := range tables {
		out[i].Table = t
		g.Go(func() error {
			q := fmt.Sprintf(`SELECT count(*), coalesce(sum(hashtextextended(r::text, 0)::numeric), 0)::text FROM %s r WHERE %s = $1`, t, col)
			if err := db.QueryRowContext(ctx, q, shard).Scan(&out[i].Rows, &out[i].Checksum); err != nil {
				return fmt.Errorf("shard: checksum of %s: %w", t, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func countRows(ctx context.Context, db *sql.DB, tables []string, column string, shard int) (int64, error) {
	var total int64
	for _, t := range tables {
		var n int64
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s = $1`, t, pgx.Identifier{column}.Sanitize())
		if err := db.QueryRowContext(ctx, q, shard).Scan(&n); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// deleteShardRows deletes the shard's rows in batches, with triggers (the
// fence) off for the session (session_replication_role = replica, which
// needs a superuser — as do subscriptions in PostgreSQL 15).
func deleteShardRows(ctx context.Context, db *sql.DB, tables []string, column string, shard int) (int64, error) {
	col := pgx.Identifier{column}.Sanitize()
	var total int64
	for _, t := range tables {
		c := col
		if t == "blueprint_shard_marker" {
			c = "shard"
		}
		for {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return total, fmt.Errorf("shard: delete: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
				tx.Rollback()
				return total, fmt.Errorf("shard: delete: %w", err)
			}
			r, err := tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE ctid = ANY (ARRAY (SELECT ctid FROM %s WHERE %s = $1 LIMIT 5000))`, t, t, c), shard)
			if err != nil {
				tx.Rollback()
				return total, fmt.Errorf("shard: delete from %s: %w", t, err)
			}
			if err := tx.Commit(); err != nil {
				return total, fmt.Errorf("shard: delete from %s: %w", t, err)
			}
			n, _ := r.RowsAffected()
			total += n
			if n == 0 {
				break
			}
		}
	}
	return total, nil
}

// resetSequences moves every sequence owned by a sharded table's column on
// the target to at least the source's value and the column's maximum:
// logical replication does not copy sequences.
func resetSequences(ctx context.Context, src, dst *sql.DB, tables []string) (int, error) {
	n := 0
	for _, t := range tables {
		rows, err := dst.QueryContext(ctx, `SELECT a.attname, pg_get_serial_sequence($1::text, a.attname) FROM pg_attribute a
			WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped AND pg_get_serial_sequence($1::text, a.attname) IS NOT NULL`, t)
		if err != nil {
			return n, fmt.Errorf("shard: sequences of %s: %w", t, err)
		}
		type seq struct{ col, name string }
		var seqs []seq
		for rows.Next() {
			var s seq
			if err := rows.Scan(&s.col, &s.name); err != nil {
				rows.Close()
				return n, fmt.Errorf("shard: sequences of %s: %w", t, err)
			}
			seqs = append(seqs, s)
		}
		rows.Close()
		for _, s := range seqs {
			var last int64
			if err := src.QueryRowContext(ctx, `SELECT last_value FROM `+s.name).Scan(&last); err != nil {
				return n, fmt.Errorf("shard: sequence %s on source: %w", s.name, err)
			}
			q := fmt.Sprintf(`SELECT setval($1, greatest($2::bigint, (SELECT last_value FROM %s), (SELECT coalesce(max(%s), 1) FROM %s)::bigint))`,
				s.name, pgx.Identifier{s.col}.Sanitize(), t)
			if _, err := dst.ExecContext(ctx, q, s.name, last); err != nil {
				return n, fmt.Errorf("shard: sequence %s on target: %w", s.name, err)
			}
			n++
		}
	}
	return n, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
