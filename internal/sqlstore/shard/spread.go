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
// have a primary key of integer columns that starts with the shard column,
// the same columns on every cluster, and no
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
	srcID, err := DatabaseIdentity(ctx, src)
	if err != nil {
		return res, err
	}
	self := ""
	for name, p := range pools {
		id, err := DatabaseIdentity(ctx, p)
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
		key, err := primaryKey(ctx, src, t)
		if err != nil {
			return res, err
		}
		if len(key) == 0 || key[0] != opts.Column {
			return res, fmt.Errorf("shard: %s: its primary key (%s) does not start with %s", t, strings.Join(key, ", "), opts.Column)
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
		n, err := spreadTable(ctx, src, m, pools, self, t, cols, key, opts, copied)
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

// spreadTable moves one table's rows, batch by batch in primary key
// order; it returns the rows deleted from src.
func spreadTable(ctx context.Context, src *sql.DB, m *Map, pools map[string]*sql.DB, self, table string, cols, key []string, opts SpreadOptions, copied map[string]int64) (int64, error) {
	quote := func(names []string, prefix string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = prefix + pgx.Identifier{n}.Sanitize()
		}
		return out
	}
	qcols, qkey := quote(cols, ""), quote(key, "r.")
	keyAt := make([]int, len(key))
	for i, k := range key {
		keyAt[i] = indexOf(cols, k)
	}
	// unnest($1::bigint[], …) AS k(c0, …) joined on the key columns:
	// how a batch's rows are found again on the owner and in the source.
	var arrays, names, on []string
	for i := range key {
		arrays = append(arrays, fmt.Sprintf("$%d::bigint[]", i+1))
		names = append(names, fmt.Sprintf("c%d", i))
		on = append(on, fmt.Sprintf("%s = k.c%d", qkey[i], i))
	}
	byKeys := fmt.Sprintf("unnest(%s) AS k(%s)", strings.Join(arrays, ", "), strings.Join(names, ", "))
	batch := min(opts.Batch, 60000/len(cols))
	var after []string
	for i := range key {
		after = append(after, fmt.Sprintf("$%d::bigint", i+1))
	}
	sel := fmt.Sprintf(`SELECT %s, hashtextextended(r::text, 0) FROM %s r WHERE (%s) > (%s) ORDER BY %s LIMIT %d`,
		strings.Join(quote(cols, "r."), ", "), table, strings.Join(qkey, ", "), strings.Join(after, ", "), strings.Join(qkey, ", "), batch)
	type row struct {
		vals []any
		key  []int64
		hash int64
	}
	keyArgs := func(rs []row) []any {
		args := make([]any, len(key))
		for i := range key {
			col := make([]int64, len(rs))
			for j, r := range rs {
				col[j] = r.key[i]
			}
			args[i] = col
		}
		return args
	}
	var deleted int64
	last := make([]any, len(key))
	for i := range last {
		last[i] = int64(-1 << 63)
	}
	for {
		rows, err := src.QueryContext(ctx, sel, last...)
		if err != nil {
			return deleted, fmt.Errorf("shard: read %s: %w", table, err)
		}
		byCluster := map[string][]row{}
		var moved []row
		seen := 0
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
			hash, _ := toInt64(vals[len(cols)])
			r := row{vals: vals[:len(cols)], key: make([]int64, len(key)), hash: hash}
			for i, at := range keyAt {
				v, ok := toInt64(vals[at])
				if !ok {
					rows.Close()
					return deleted, fmt.Errorf("shard: %s: key column %s is not an integer (%T)", table, key[i], vals[at])
				}
				r.key[i] = v
				last[i] = v
			}
			seen++
			s := r.key[0]
			if s < 0 || s >= Shards {
				rows.Close()
				return deleted, fmt.Errorf("shard: %s row %v has shard %d, out of range", table, r.key, s)
			}
			owner := m.Owner[s]
			if owner == self {
				continue // already on its cluster
			}
			byCluster[owner] = append(byCluster[owner], r)
			moved = append(moved, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return deleted, fmt.Errorf("shard: read %s: %w", table, err)
		}
		if seen == 0 {
			return deleted, nil
		}
		for owner, rs := range byCluster {
			dst, ok := pools[owner]
			if !ok {
				return deleted, fmt.Errorf("shard: shard %d belongs to cluster %q, which the map does not list", rs[0].key[0], owner)
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
			if _, err := dst.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s) VALUES %s ON CONFLICT DO NOTHING`, table, strings.Join(qcols, ", "), strings.Join(ph, ", ")), args...); err != nil {
				return deleted, fmt.Errorf("shard: write %s on %s: %w", table, owner, err)
			}
			// Read the batch back on the owner and compare every row.
			want := make(map[string]int64, len(rs))
			for _, r := range rs {
				want[fmt.Sprint(r.key)] = r.hash
			}
			check, err := dst.QueryContext(ctx, fmt.Sprintf(`SELECT %s, hashtextextended(r::text, 0) FROM %s r JOIN %s ON %s`,
				strings.Join(qkey, ", "), table, byKeys, strings.Join(on, " AND ")), keyArgs(rs)...)
			if err != nil {
				return deleted, fmt.Errorf("shard: verify %s on %s: %w", table, owner, err)
			}
			found := 0
			for check.Next() {
				k := make([]int64, len(key))
				dest := make([]any, len(key)+1)
				for i := range k {
					dest[i] = &k[i]
				}
				var h int64
				dest[len(key)] = &h
				if err := check.Scan(dest...); err != nil {
					check.Close()
					return deleted, fmt.Errorf("shard: verify %s on %s: %w", table, owner, err)
				}
				if want[fmt.Sprint(k)] != h {
					check.Close()
					return deleted, fmt.Errorf("shard: %s row %v on cluster %s differs from the source's; nothing of it was deleted", table, k, owner)
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
		if opts.KeepSource || len(moved) == 0 {
			continue
		}
		r, err := src.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s r USING %s WHERE %s`, table, byKeys, strings.Join(on, " AND ")), keyArgs(moved)...)
		if err != nil {
			return deleted, fmt.Errorf("shard: delete %s from the source: %w", table, err)
		}
		n, _ := r.RowsAffected()
		deleted += n
	}
}

// primaryKey returns the table's primary key columns in order.
func primaryKey(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	out, err := queryStrings(ctx, db, `SELECT a.attname FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.n`, table)
	if err != nil {
		return nil, fmt.Errorf("shard: primary key of %s: %w", table, err)
	}
	return out, nil
}

// queryStrings returns the first column of every row of q.
func queryStrings(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
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
	return out, rows.Err()
}

// DatabaseIdentity names a PostgreSQL database uniquely: its server's
// system identifier and its name (two URLs may name the same database).
func DatabaseIdentity(ctx context.Context, db *sql.DB) (string, error) {
	var sys int64
	var name string
	if err := db.QueryRowContext(ctx, `SELECT system_identifier, current_database() FROM pg_control_system()`).Scan(&sys, &name); err != nil {
		return "", fmt.Errorf("shard: database identity: %w", err)
	}
	return fmt.Sprintf("%d/%s", sys, name), nil
}

// columnsOf returns the table's columns in order.
func columnsOf(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	out, err := queryStrings(ctx, db, `SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		return nil, fmt.Errorf("shard: columns of %s: %w", table, err)
	}
	if len(out) == 0 {
		return nil, errors.New("shard: no table " + table)
	}
	return out, nil
}

func indexOf(cols []string, name string) int {
	for i, c := range cols {
		if c == name {
			return i
		}
	}
	return -1
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	}
	return 0, false
}
