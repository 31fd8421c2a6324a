// Package shard spreads Blueprint's PostgreSQL data over several physical
// clusters by logical shard, the number every ID carries (internal/idgen,
// 4096 shards). A catalog database holds the versioned shard map (logical
// shard → cluster) and the clusters' connection URLs; a Router routes each
// query to the cluster of its shard, holds writes to a shard whose move is
// in its cutover pause, and fans read queries out over all clusters; Move
// moves one logical shard to another cluster online with PostgreSQL logical
// replication (publication with a row filter on the shard column, fence,
// catch-up marker, per-table count and checksum, map flip).
//
// Every sharded table carries the logical shard in an integer column named
// shard (Config.Column), and that column belongs to the table's primary key
// (or replica identity). See README.md for why a shard column and not a
// schema per logical shard.
package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Shards is the number of logical shards, as carried by idgen IDs.
const Shards = idgen.MaxShard + 1

// NotifyChannel is the PostgreSQL LISTEN/NOTIFY channel on which the
// catalog announces a new map version (the payload is the version).
const NotifyChannel = "blueprint_shard_map"

// States of a logical shard in the map.
const (
	StateActive = "active" // reads and writes go to the owning cluster
	StatePaused = "paused" // cutover of a move: writes wait, reads go to the owner
)

// Errors returned by the package.
var (
	ErrBadShard     error = &errs.Error{Kind: errs.Invalid, Msg: "shard: logical shard out of range"}
	ErrNoCluster    error = &errs.Error{Kind: errs.NotFound, Msg: "shard: unknown cluster"}
	ErrNoMap        error = &errs.Error{Kind: errs.Unavailable, Msg: "shard: catalog holds no shard map"}
	ErrPaused       error = &errs.Error{Kind: errs.Unavailable, Msg: "shard: writes to the shard are paused by a move"}
	ErrMoveConflict error = &errs.Error{Kind: errs.Conflict, Msg: "shard: another move of this shard is unfinished"}
)

const catalogDDL = `
CREATE TABLE IF NOT EXISTS blueprint_shard_clusters (
	name         text PRIMARY KEY,
	primary_url  text NOT NULL,
	replica_urls text[] NOT NULL DEFAULT '{}',
	added_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS blueprint_shard_map (
	shard      integer PRIMARY KEY CHECK (shard >= 0 AND shard < 4096),
	cluster    text NOT NULL REFERENCES blueprint_shard_clusters(name),
	state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
	changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS blueprint_shard_version (
	id      integer PRIMARY KEY CHECK (id = 1),
	version bigint NOT NULL
);
INSERT INTO blueprint_shard_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS blueprint_shard_moves (
	id           bigserial PRIMARY KEY,
	shard        integer NOT NULL,
	from_cluster text NOT NULL,
	to_cluster   text NOT NULL,
	step         text NOT NULL,
	started_at   timestamptz NOT NULL DEFAULT now(),
	finished_at  timestamptz,
	rows_moved   bigint,
	pause_ms     double precision,
	error        text
);
CREATE UNIQUE INDEX IF NOT EXISTS blueprint_shard_moves_open ON blueprint_shard_moves (shard) WHERE finished_at IS NULL;
`

// ClusterConfig is one physical PostgreSQL cluster: its primary and
// optional streaming replicas (routed by internal/sqlstore/pgrepl).
type ClusterConfig struct {
	Name     string
	Primary  string
	Replicas []string
}

// Map is one version of the shard map.
type Map struct {
	Version  int64
	Clusters map[string]ClusterConfig
	Owner    [Shards]string // cluster name per logical shard
	State    [Shards]string
}

// ShardsOf returns the logical shards the cluster owns, in order.
func (m *Map) ShardsOf(cluster string) []int32 {
	var out []int32
	for s, c := range m.Owner {
		if c == cluster {
			out = append(out, int32(s))
		}
	}
	return out
}

// ClusterNames returns the names of the clusters, sorted.
func (m *Map) ClusterNames() []string {
	names := make([]string, 0, len(m.Clusters))
	for n := range m.Clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Catalog is the database that stores the shard map. It may be any
// PostgreSQL database (a small dedicated one, or the first cluster's).
type Catalog struct {
	DB *sql.DB
}

// OpenCatalog connects to the catalog database at url and creates the
// catalog tables if they are missing.
func OpenCatalog(ctx context.Context, url string) (*Catalog, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("shard: catalog: %w", err)
	}
	db.SetMaxOpenConns(4)
	c := &Catalog{DB: db}
	if err := c.ensure(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the catalog's pool.
func (c *Catalog) Close() error { return c.DB.Close() }

func (c *Catalog) ensure(ctx context.Context) error {
	// Two processes creating the tables at once would race in CREATE IF NOT
	// EXISTS; an advisory lock serialises them.
	tx, err := c.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("shard: catalog: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(72616401)`); err != nil {
		return fmt.Errorf("shard: catalog: %w", err)
	}
	if _, err := tx.ExecContext(ctx, catalogDDL); err != nil {
		return fmt.Errorf("shard: catalog schema: %w", err)
	}
	return tx.Commit()
}

// change runs fn in a catalog transaction, bumps the map version and
// notifies routers, and returns the new version.
func (c *Catalog) change(ctx context.Context, fn func(*sql.Tx) error) (int64, error) {
	tx, err := c.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("shard: catalog: %w", err)
	}
	defer tx.Rollback()
	var v int64
	// The version row doubles as the catalog's write lock: changes are serial.
	if err := tx.QueryRowContext(ctx, `UPDATE blueprint_shard_version SET version = version + 1 WHERE id = 1 RETURNING version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("shard: catalog version: %w", err)
	}
	if err := fn(tx); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, fmt.Sprint(v)); err != nil {
		return 0, fmt.Errorf("shard: catalog notify: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("shard: catalog commit: %w", err)
	}
	return v, nil
}

// AddCluster registers a cluster (or updates its URLs). If the map is
// still empty, the logical shards are spread evenly over all registered
// clusters in contiguous ranges (cluster i of n, by name, gets shards
// [i·4096/n, (i+1)·4096/n)). Shards are never reassigned by AddCluster
// once the map exists: that is Move's job.
func (c *Catalog) AddCluster(ctx context.Context, cc ClusterConfig) (int64, error) {
	if cc.Name == "" || strings.ContainsAny(cc.Name, " \t\n'\"") || cc.Primary == "" {
		return 0, &errs.Error{Kind: errs.Invalid, Msg: "shard: cluster needs a name (no spaces or quotes) and a primary URL"}
	}
	return c.change(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO blueprint_shard_clusters (name, primary_url, replica_urls) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET primary_url = excluded.primary_url, replica_urls = excluded.replica_urls`,
			cc.Name, cc.Primary, nonNil(cc.Replicas)); err != nil {
			return fmt.Errorf("shard: add cluster: %w", err)
		}
		return nil
	})
}

// Init registers the clusters and, if the map is empty, assigns the
// logical shards evenly over them. It is idempotent.
func (c *Catalog) Init(ctx context.Context, clusters []ClusterConfig) (int64, error) {
	if len(clusters) == 0 {
		return 0, &errs.Error{Kind: errs.Invalid, Msg: "shard: init needs at least one cluster"}
	}
	var v int64
	for _, cc := range clusters {
		var err error
		if v, err = c.AddCluster(ctx, cc); err != nil {
			return 0, err
		}
	}
	var n int
	if err := c.DB.QueryRowContext(ctx, `SELECT count(*) FROM blueprint_shard_map`).Scan(&n); err != nil {
		return 0, fmt.Errorf("shard: catalog: %w", err)
	}
	if n == Shards {
		return v, nil
	}
	return c.change(ctx, func(tx *sql.Tx) error {
		var names []string
		rows, err := tx.QueryContext(ctx, `SELECT name FROM blueprint_shard_clusters ORDER BY name`)
		if err != nil {
			return fmt.Errorf("shard: catalog: %w", err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return fmt.Errorf("shard: catalog: %w", err)
			}
			names = append(names, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("shard: catalog: %w", err)
		}
		shards := make([]int32, Shards)
		owners := make([]string, Shards)
		for s := range Shards {
			shards[s] = int32(s)
			owners[s] = names[s*len(names)/Shards]
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO blueprint_shard_map (shard, cluster)
			SELECT * FROM unnest($1::int[], $2::text[]) ON CONFLICT (shard) DO NOTHING`, shards, owners); err != nil {
			return fmt.Errorf("shard: initial assignment: %w", err)
		}
		return nil
	})
}

// Version returns the current map version.
func (c *Catalog) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := c.DB.QueryRowContext(ctx, `SELECT version FROM blueprint_shard_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("shard: catalog version: %w", err)
	}
	return v, nil
}

// Load reads the whole map in one snapshot.
func (c *Catalog) Load(ctx context.Context) (*Map, error) {
	tx, err := c.DB.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("shard: catalog: %w", err)
	}
	defer tx.Rollback()
	m := &Map{Clusters: map[string]ClusterConfig{}}
	if err := tx.QueryRowContext(ctx, `SELECT version FROM blueprint_shard_version WHERE id = 1`).Scan(&m.Version); err != nil {
		return nil, fmt.Errorf("shard: catalog version: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, primary_url, replica_urls FROM blueprint_shard_clusters`)
	if err != nil {
		return nil, fmt.Errorf("shard: catalog clusters: %w", err)
	}
	for rows.Next() {
		var cc ClusterConfig
		if err := rows.Scan(&cc.Name, &cc.Primary, pgtype.NewMap().SQLScanner(&cc.Replicas)); err != nil {
			rows.Close()
			return nil, fmt.Errorf("shard: catalog clusters: %w", err)
		}
		m.Clusters[cc.Name] = cc
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shard: catalog clusters: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT shard, cluster, state FROM blueprint_shard_map`)
	if err != nil {
		return nil, fmt.Errorf("shard: catalog map: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var s int
		var cl, st string
		if err := rows.Scan(&s, &cl, &st); err != nil {
			return nil, fmt.Errorf("shard: catalog map: %w", err)
		}
		if s < 0 || s >= Shards {
			return nil, fmt.Errorf("%w: %d in the catalog", ErrBadShard, s)
		}
		m.Owner[s], m.State[s] = cl, st
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shard: catalog map: %w", err)
	}
	if n != Shards {
		return nil, fmt.Errorf("%w (%d of %d shards assigned; run Init or blueprint db move-shard --add-cluster)", ErrNoMap, n, Shards)
	}
	return m, nil
}

// setShard changes one shard's owner and state (a version bump).
func (c *Catalog) setShard(ctx context.Context, shard int, cluster, state string) (int64, error) {
	return c.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE blueprint_shard_map SET cluster = $2, state = $3, changed_at = now() WHERE shard = $1`, shard, cluster, state)
		if err != nil {
			return fmt.Errorf("shard: map update: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: shard %d missing", ErrNoMap, shard)
		}
		return nil
	})
}

// MoveRecord is one row of the catalog's move history.
type MoveRecord struct {
	ID         int64
	Shard      int
	From, To   string
	Step       string
	StartedAt  time.Time
	FinishedAt *time.Time
	Rows       *int64
	PauseMS    *float64
	Error      *string
}

// Moves returns the move history, newest first, at most limit rows.
func (c *Catalog) Moves(ctx context.Context, limit int) ([]MoveRecord, error) {
	rows, err := c.DB.QueryContext(ctx, `SELECT id, shard, from_cluster, to_cluster, step, started_at, finished_at, rows_moved, pause_ms, error
		FROM blueprint_shard_moves ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("shard: catalog moves: %w", err)
	}
	defer rows.Close()
	var out []MoveRecord
	for rows.Next() {
		var r MoveRecord
		if err := rows.Scan(&r.ID, &r.Shard, &r.From, &r.To, &r.Step, &r.StartedAt, &r.FinishedAt, &r.Rows, &r.PauseMS, &r.Error); err != nil {
			return nil, fmt.Errorf("shard: catalog moves: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// lockShard takes a session advisory lock on the catalog for one shard, so
// that two movers (or a mover and an abort) never work on the same shard
// at once; the lock goes with the mover's connection if it dies.
func (c *Catalog) lockShard(ctx context.Context, shard int) (unlock func(), err error) {
	conn, err := c.DB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("shard: catalog: %w", err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(72616403, $1)`, shard).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("shard: catalog lock: %w", err)
	}
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("%w: another mover is working on shard %d now", ErrMoveConflict, shard)
	}
	return func() {
		conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(72616403, $1)`, shard)
		conn.Close()
	}, nil
}

func (c *Catalog) openMove(ctx context.Context, shard int) (*MoveRecord, error) {
	var r MoveRecord
	err := c.DB.QueryRowContext(ctx, `SELECT id, shard, from_cluster, to_cluster, step, started_at FROM blueprint_shard_moves
		WHERE shard = $1 AND finished_at IS NULL`, shard).Scan(&r.ID, &r.Shard, &r.From, &r.To, &r.Step, &r.StartedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shard: catalog moves: %w", err)
	}
	return &r, nil
}

func (c *Catalog) startMove(ctx context.Context, shard int, from, to string) (*MoveRecord, error) {
	r := MoveRecord{Shard: shard, From: from, To: to, Step: "start"}
	err := c.DB.QueryRowContext(ctx, `INSERT INTO blueprint_shard_moves (shard, from_cluster, to_cluster, step) VALUES ($1, $2, $3, 'start')
		RETURNING id, started_at`, shard, from, to).Scan(&r.ID, &r.StartedAt)
	if err != nil {
		return nil, fmt.Errorf("shard: catalog moves: %w", err)
	}
	return &r, nil
}

func (c *Catalog) stepMove(ctx context.Context, id int64, step string) error {
	if _, err := c.DB.ExecContext(ctx, `UPDATE blueprint_shard_moves SET step = $2 WHERE id = $1`, id, step); err != nil {
		return fmt.Errorf("shard: catalog moves: %w", err)
	}
	return nil
}

func (c *Catalog) finishMove(ctx context.Context, id int64, step string, rows int64, pause time.Duration, moveErr error) error {
	var e any
	if moveErr != nil {
		e = moveErr.Error()
	}
	if _, err := c.DB.ExecContext(ctx, `UPDATE blueprint_shard_moves SET step = $2, finished_at = now(), rows_moved = $3, pause_ms = $4, error = $5 WHERE id = $1`,
		id, step, rows, float64(pause)/float64(time.Millisecond), e); err != nil {
		return fmt.Errorf("shard: catalog moves: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
