package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
)

// SpreadOptions configure Spread.
type SpreadOptions struct {
	Schema     string    // default "public"
	Column     string    // default "shard"
	Batch      int       // rows per step (default 1000)
	KeepSource bool      // copy and verify, but leave the rows in the source
	Progress   io.Writer // one line per table and a final count; may be nil
	// Open opens a cluster's pool (default sql.Open("pgx", url)).
	Open func(url string) (*sql.DB, error)
}

// SpreadResult counts what Spread did, per table and cluster.
type SpreadResult struct {
	Tables  []string
	Copied  map[string]map[string]int64 // table → cluster → rows verified there
	Deleted int64                       // rows removed from the source
}

// Spread moves the rows of the sharded tables of an unsharded database
// src — a PostgreSQL database that held every row before sharding was
// turned on — to the clusters that own their shards in the catalog's map:
// the step from one database onto N shards. Each batch of rows (in primary
// key order) is inserted on its owner (ON CONFLICT DO NOTHING), read back
// there and compared row by row (hashtextextended of the row's text, so a
// row that exists there with other values is an error, not skipped), and
// only then deleted from src. Killed at any point, a rerun continues: rows
// still in src are copied again as no-ops and verified. The tables must
// have PRIMARY KEY (shard, id), the same columns on every cluster, and no
// shard may be in a move's pause. Run it with the writers of src stopped,
// or with the platform already writing these tables to the clusters.
func Spread(ctx context.Context, src *sql.DB, cat *Catalog, opts SpreadOptions) (SpreadResult, error) {
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if opts.Column == "" {
		opts.Column = "shard"
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Open == nil {
		opts.Open = func(url string) (*sql.DB, error) { return sql.Open("pgx", url) }
	}
	res := SpreadResult{Copied: map[string]map[string]int64{}}
	m, err := cat.Load(ctx)
	if err != nil {
		return res, err
	}
	for s, st := range m.State {
		if st == StatePaused {
			return res, fmt.Errorf("shard: shard %d is paused by a move; finish or abort it first", s)
		}
	}
	pools := map[string]*sql.DB{}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	for name, cc := range m.Clusters {
		p, err := opts.Open(cc.Primary)
		if err != nil {
			return res, fmt.Errorf("shard: cluster %s: %w", name, err)
		}
		pools[name] = p
	}
	// A cluster that is the source database itself already holds its
	// rows where they belong: they are neither copied nor deleted.
	srcID, err := databaseIdentity(ctx, src)
	if err != nil {
		return res, err
	}
	self := ""
	for name, p := range pools {
		id, err := databaseIdentity(ctx, p)
		if err != nil {
			return res, fmt.Errorf("shard: cluster %s: %w", name, err)
		}
		if id == srcID {
			self = name
		}
	}
	tables, err := shardedTables(ctx, src, opts.Schema, opts.Column)
	if err != nil {
		return res, err
	}
	res.Tables = tables
	for _, t := range tables {
		cols, err := columnsOf(ctx, src, t)
		if err != nil {
			return res, err
		}
		if !hasShardIDKey(cols, opts.Column) {
			return res, fmt.Errorf("shard: %s has no %s and id columns to page by", t, opts.Column)
		}
		for name, p := range pools {
			dcols, err := columnsOf(ctx, p, t)
			if err != nil {
				return res, fmt.Errorf("shard: cluster %s: %w", name, err)
			}
			if strings.Join(dcols, ",") != strings.Join(cols, ",") {
				return res, fmt.Errorf("shard: %s has columns (%s) on cluster %s, (%s) in the source", t, strings.Join(dcols, ", "), name, strings.Join(cols, ", "))
			}
		}
		copied := map[string]int64{}
		res.Copied[t] = copied
		n, err := spreadTable(ctx, src, m, pools, self, t, cols, opts, copied)
		res.Deleted += n
		var total int64
		for _, c := range copied {
			total += c
		}
		fmt.Fprintf(opts.Progress, "%s: %d rows verified on their clusters %v, %d deleted from the source\n", t, total, copied, n)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// spreadTable moves one table's rows, batch by batch; it returns the rows
// deleted from src.
func spreadTable(ctx context.Context, src *sql.DB, m *Map, pools map[string]*sql.DB, self, table string, cols []string, opts SpreadOptions, copied map[string]int64) (int64, error) {
	col := pgx.Identifier{opts.Column}.Sanitize()
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	batch := min(opts.Batch, 60000/len(cols))
	sel := fmt.Sprintf(`SELECT %s, hashtextextended(r::text, 0) FROM %s r WHERE (%s, id) > ($1, $2) ORDER BY %s, id LIMIT %d`,
		strings.Join(prefixed("r.", quoted), ", "), table, col, col, batch)
	var deleted int64
	lastShard, lastID := int64(-1), int64(-1<<63)
	for {
		rows, err := src.QueryContext(ctx, sel, lastShard, lastID)
		if err != nil {
			return deleted, fmt.Errorf("shard: read %s: %w", table, err)
		}
		type row struct {
			vals      []any
			shard, id int64
			hash      int64
		}
		byCluster := map[string][]row{}
		var keys [][2]int64
		none := [2]int64{-1, -1}
		last := none
		shardAt, idAt := indexOf(cols, opts.Column), indexOf(cols, "id")
		for rows.Next() {
			vals := make([]any, len(cols)+1)
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return deleted, fmt.Errorf("shard: read %s: %w", table, err)
			}
			r := row{vals: vals[:len(cols)], shard: toInt64(vals[shardAt]), id: toInt64(vals[idAt]), hash: toInt64(vals[len(cols)])}
			if r.shard < 0 || r.shard >= Shards {
				rows.Close()
				return deleted, fmt.Errorf("shard: %s row id %d has shard %d, out of range", table, r.id, r.shard)
			}
			last = [2]int64{r.shard, r.id}
			owner := m.Owner[r.shard]
			if owner == self {
				continue // already on its cluster
			}
			byCluster[owner] = append(byCluster[owner], r)
			keys = append(keys, last)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return deleted, fmt.Errorf("shard: read %s: %w", table, err)
		}
		if last == none {
			return deleted, nil
		}
		lastShard, lastID = last[0], last[1]
		for owner, rs := range byCluster {
			dst, ok := pools[owner]
			if !ok {
				return deleted, fmt.Errorf("shard: shard %d belongs to cluster %q, which the map does not list", rs[0].shard, owner)
			}
			var ph []string
			var args []any
			for _, r := range rs {
				p := make([]string, len(cols))
				for i := range cols {
					args = append(args, r.vals[i])
					p[i] = fmt.Sprintf("$%d", len(args))
				}
				ph = append(ph, "("+strings.Join(p, ", ")+")")
			}
			if _, err := dst.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s) VALUES %s ON CONFLICT DO NOTHING`, table, strings.Join(quoted, ", "), strings.Join(ph, ", ")), args...); err != nil {
				return deleted, fmt.Errorf("shard: write %s on %s: %w", table, owner, err)
			}
			// Read the batch back on the owner and compare every row.
			shards, ids := make([]int64, len(rs)), make([]int64, len(rs))
			want := make(map[[2]int64]int64, len(rs))
			for i, r := range rs {
				shards[i], ids[i] = r.shard, r.id
				want[[2]int64{r.shard, r.id}] = r.hash
			}
			check, err := dst.QueryContext(ctx, fmt.Sprintf(`SELECT r.%s, r.id, hashtextextended(r::text, 0) FROM %s r
				JOIN unnest($1::bigint[], $2::bigint[]) AS k(s, i) ON r.%s = k.s AND r.id = k.i`, col, table, col), shards, ids)
			if err != nil {
				return deleted, fmt.Errorf("shard: verify %s on %s: %w", table, owner, err)
			}
			found := 0
			for check.Next() {
				var s, id, h int64
				if err := check.Scan(&s, &id, &h); err != nil {
					check.Close()
					return deleted, fmt.Errorf("shard: verify %s on %s: %w", table, owner, err)
				}
				if want[[2]int64{s, id}] != h {
					check.Close()
					return deleted, fmt.Errorf("shard: %s row (%d, %d) on cluster %s differs from the source's; nothing of it was deleted", table, s, id, owner)
				}
				found++
			}
			err = check.Err()
			check.Close()
			if err != nil {
				return deleted, fmt.Errorf("shard: verify %s on %s: %w", table, owner, err)
			}
			if found != len(rs) {
				return deleted, fmt.Errorf("shard: %s: %d of %d rows found on cluster %s after the copy", table, found, len(rs), owner)
			}
			copied[owner] += int64(found)
		}
		if opts.KeepSource || len(keys) == 0 {
			continue
		}
		shards, ids := make([]int64, len(keys)), make([]int64, len(keys))
		for i, k := range keys {
			shards[i], ids[i] = k[0], k[1]
		}
		r, err := src.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s r USING unnest($1::bigint[], $2::bigint[]) AS k(s, i) WHERE r.%s = k.s AND r.id = k.i`, table, col), shards, ids)
		if err != nil {
			return deleted, fmt.Errorf("shard: delete %s from the source: %w", table, err)
		}
		n, _ := r.RowsAffected()
		deleted += n
	}
}

// databaseIdentity names a database uniquely: its server's system
// identifier and its name.
func databaseIdentity(ctx context.Context, db *sql.DB) (string, error) {
	var sys int64
	var name string
	if err := db.QueryRowContext(ctx, `SELECT system_identifier, current_database() FROM pg_control_system()`).Scan(&sys, &name); err != nil {
		return "", fmt.Errorf("shard: database identity: %w", err)
	}
	return fmt.Sprintf("%d/%s", sys, name), nil
}

// columnsOf returns the table's columns in order.
func columnsOf(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		return nil, fmt.Errorf("shard: columns of %s: %w", table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("shard: no table " + table)
	}
	return out, nil
}

func hasShardIDKey(cols []string, column string) bool {
	return indexOf(cols, column) >= 0 && indexOf(cols, "id") >= 0
}

func indexOf(cols []string, name string) int {
	for i, c := range cols {
		if c == name {
			return i
		}
	}
	return -1
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int:
		return int64(x)
	}
	return -1
}
