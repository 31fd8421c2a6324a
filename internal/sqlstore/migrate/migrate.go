// Package migrate moves a Blueprint SQLite store onto PostgreSQL: the
// "growing up" step of the database issue. Copy reads one consistent
// snapshot of the SQLite file, writes every table into a migrated, empty
// PostgreSQL database in foreign-key order and in batches, moves the
// PostgreSQL sequences past the copied IDs, and then Verify compares row
// counts and a checksum over every row, computed with the same canonical
// encoding on both sides.
package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// ErrNotEmpty is returned by Copy when the target holds rows in one of the
// tables to copy and Options.Force is not set.
var ErrNotEmpty = errors.New("migrate: the target database is not empty")

// skipped are source tables that are not copied: the migration bookkeeping
// (each engine keeps its own).
var skipped = []string{"schema_migrations"}

// Options tune Copy.
type Options struct {
	// Batch is the number of rows per INSERT (default 500; fewer when a
	// table has many columns, PostgreSQL takes at most 65535 parameters).
	Batch int
	// Force empties the target's tables first instead of refusing a
	// non-empty target.
	Force bool
	// Progress, when not nil, shows a progress bar over all rows.
	Progress io.Writer
	// TargetURL is the target's URL; with it, Copy creates the lock
	// tables (lock_leases, fences) that the PostgreSQL locker keeps, so
	// fencing tokens continue from the SQLite install's.
	TargetURL string
}

// Table is one table's result: rows and checksum on each side.
type Table struct {
	Name           string `json:"name"`
	SourceRows     int64  `json:"source_rows"`
	TargetRows     int64  `json:"target_rows"`
	SourceChecksum string `json:"source_checksum"`
	TargetChecksum string `json:"target_checksum"`
}

// Match reports whether both sides agree.
func (t Table) Match() bool {
	return t.SourceRows == t.TargetRows && t.SourceChecksum == t.TargetChecksum
}

// Report is the outcome of Verify.
type Report struct {
	Tables []Table `json:"tables"`
}

// OK reports whether every table matches.
func (r Report) OK() bool {
	for _, t := range r.Tables {
		if !t.Match() {
			return false
		}
	}
	return true
}

// WriteTable prints the report as an aligned text table.
func (r Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%-32s %12s %12s  %-16s  %-16s  %s\n", "table", "sqlite rows", "pg rows", "sqlite checksum", "pg checksum", "")
	for _, t := range r.Tables {
		state := "ok"
		if !t.Match() {
			state = "MISMATCH"
		}
		fmt.Fprintf(w, "%-32s %12d %12d  %-16s  %-16s  %s\n", t.Name, t.SourceRows, t.TargetRows, t.SourceChecksum, t.TargetChecksum, state)
	}
}

// kind is the canonical type of a column, from the target's schema.
type kind int

const (
	kindInt kind = iota
	kindFloat
	kindText
	kindBytes
)

// column is a copied column.
type column struct {
	name string
	kind kind
}

// table is a table to copy: its columns in the source's order.
type table struct {
	name string
	cols []column
}

// plan is what Copy and Verify work on: the tables in dependency order.
type plan struct {
	tables []table
}

// Copy copies every table of src (SQLite) into dst (PostgreSQL, already
// migrated by sqlstore.OpenPostgres) and returns the verification report.
// It refuses a target with rows (ErrNotEmpty) unless opts.Force; a target
// that already holds exactly the source's rows verifies as such, so a
// rerun after a finished copy is harmless.
func Copy(ctx context.Context, src, dst *sqlstore.DB, opts Options) (Report, error) {
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.TargetURL != "" {
		l, err := lock.NewPostgres(ctx, opts.TargetURL, lock.Options{})
		if err != nil {
			return Report{}, fmt.Errorf("migrate: lock tables: %w", err)
		}
		l.Close()
	}
	p, err := makePlan(ctx, src, dst)
	if err != nil {
		return Report{}, err
	}
	// One read transaction on the source: a consistent snapshot, even if
	// the platform is still writing (WAL readers never block the writer).
	snap, err := src.R.BeginTx(ctx, nil)
	if err != nil {
		return Report{}, fmt.Errorf("migrate: source snapshot: %w", err)
	}
	defer snap.Rollback()
	counts := make(map[string]int64, len(p.tables))
	var total int64
	for _, t := range p.tables {
		n, err := count(ctx, snap, t.name)
		if err != nil {
			return Report{}, err
		}
		counts[t.name] = n
		total += n
	}
	seeded, nonEmpty, err := p.nonEmpty(ctx, dst)
	if err != nil {
		return Report{}, err
	}
	if len(nonEmpty) > 0 {
		if !opts.Force {
			// A finished earlier run: the target already holds exactly
			// the source's rows.
			if r, err := p.verify(ctx, snap, dst); err == nil && r.OK() {
				return r, nil
			}
			return Report{}, fmt.Errorf("%w: rows in %s (use --force to replace them)", ErrNotEmpty, strings.Join(nonEmpty, ", "))
		}
	}
	if seeded || len(nonEmpty) > 0 {
		// The rows the migrations seed (the copy brings the source's).
		if err := p.truncate(ctx, dst); err != nil {
			return Report{}, err
		}
	}
	var bar *progressbar.ProgressBar
	if opts.Progress != nil {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(opts.Progress), progressbar.OptionSetDescription("copying rows"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"),
			progressbar.OptionThrottle(100_000_000), progressbar.OptionOnCompletion(func() { fmt.Fprintln(opts.Progress) }))
	}
	for _, t := range p.tables {
		if bar != nil {
			bar.Describe(fmt.Sprintf("%-28s", t.name))
		}
		if err := copyTable(ctx, snap, dst, t, opts.Batch, bar); err != nil {
			return Report{}, err
		}
	}
	if bar != nil {
		bar.Finish()
	}
	if err := resetSequences(ctx, dst); err != nil {
		return Report{}, err
	}
	return p.verify(ctx, snap, dst)
}

// Verify compares the row counts and checksums of every table of src and
// dst without copying anything.
func Verify(ctx context.Context, src, dst *sqlstore.DB) (Report, error) {
	p, err := makePlan(ctx, src, dst)
	if err != nil {
		return Report{}, err
	}
	snap, err := src.R.BeginTx(ctx, nil)
	if err != nil {
		return Report{}, fmt.Errorf("migrate: source snapshot: %w", err)
	}
	defer snap.Rollback()
	return p.verify(ctx, snap, dst)
}

func makePlan(ctx context.Context, src, dst *sqlstore.DB) (plan, error) {
	if src.Dialect != sqlstore.SQLite || dst.Dialect != sqlstore.Postgres {
		return plan{}, fmt.Errorf("migrate: copies SQLite to PostgreSQL, not %s to %s", src.Dialect, dst.Dialect)
	}
	sv, err := src.Version(ctx)
	if err != nil {
		return plan{}, fmt.Errorf("migrate: source version: %w", err)
	}
	dv, err := dst.Version(ctx)
	if err != nil {
		return plan{}, fmt.Errorf("migrate: target version: %w", err)
	}
	if sv != dv {
		return plan{}, fmt.Errorf("migrate: schema version %d on the source, %d on the target: run both with the same blueprint", sv, dv)
	}
	names, err := src.Tables(ctx)
	if err != nil {
		return plan{}, err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(skipped, n) })
	targetCols, err := pgColumns(ctx, dst)
	if err != nil {
		return plan{}, err
	}
	var missing []string
	var tables []table
	for _, n := range names {
		tc, ok := targetCols[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		srcCols, err := sqliteColumns(ctx, src, n)
		if err != nil {
			return plan{}, err
		}
		t := table{name: n}
		for _, c := range srcCols {
			k, ok := tc[c]
			if !ok {
				missing = append(missing, n+"."+c)
				continue
			}
			t.cols = append(t.cols, column{name: c, kind: k})
		}
		tables = append(tables, t)
	}
	if len(missing) > 0 {
		return plan{}, fmt.Errorf("migrate: the target has no %s", strings.Join(missing, ", "))
	}
	deps, err := pgDependencies(ctx, dst)
	if err != nil {
		return plan{}, err
	}
	return plan{tables: order(tables, deps)}, nil
}

// order sorts tables so that every table comes after the tables its
// foreign keys reference (ties by name).
func order(tables []table, deps map[string][]string) []table {
	byName := make(map[string]table, len(tables))
	for _, t := range tables {
		byName[t.name] = t
	}
	var out []table
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string)
	visit = func(n string) {
		if state[n] != 0 {
			return // done, or a cycle (self reference): keep going
		}
		state[n] = 1
		ds := slices.Clone(deps[n])
		sort.Strings(ds)
		for _, d := range ds {
			if d != n {
				visit(d)
			}
		}
		state[n] = 2
		if t, ok := byName[n]; ok {
			out = append(out, t)
		}
	}
	for _, t := range tables {
		visit(t.name)
	}
	return out
}

func sqliteColumns(ctx context.Context, db *sqlstore.DB, table string) ([]string, error) {
	rows, err := db.R.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		return nil, fmt.Errorf("migrate: columns of %s: %w", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("migrate: columns of %s: %w", table, err)
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

func pgColumns(ctx context.Context, db *sqlstore.DB) (map[string]map[string]kind, error) {
	rows, err := db.R.QueryContext(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema()`)
	if err != nil {
		return nil, fmt.Errorf("migrate: target columns: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]kind{}
	for rows.Next() {
		var t, c, typ string
		if err := rows.Scan(&t, &c, &typ); err != nil {
			return nil, fmt.Errorf("migrate: target columns: %w", err)
		}
		k := kindText
		switch typ {
		case "bigint", "integer", "smallint":
			k = kindInt
		case "double precision", "real", "numeric":
			k = kindFloat
		case "bytea":
			k = kindBytes
		}
		if out[t] == nil {
			out[t] = map[string]kind{}
		}
		out[t][c] = k
	}
	return out, rows.Err()
}

// pgDependencies returns, per table, the tables its foreign keys reference.
func pgDependencies(ctx context.Context, db *sqlstore.DB) (map[string][]string, error) {
	rows, err := db.R.QueryContext(ctx, `SELECT c.relname, r.relname FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
		WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace`)
	if err != nil {
		return nil, fmt.Errorf("migrate: foreign keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var t, ref string
		if err := rows.Scan(&t, &ref); err != nil {
			return nil, fmt.Errorf("migrate: foreign keys: %w", err)
		}
		out[t] = append(out[t], ref)
	}
	return out, rows.Err()
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func count(ctx context.Context, q queryer, table string) (int64, error) {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+sqlstore.QuoteIdent(table)).Scan(&n); err != nil {
		return 0, fmt.Errorf("migrate: count %s: %w", table, err)
	}
	return n, nil
}

// nonEmpty returns the tables of the target holding more rows than the
// migrations seed (the seed is measured on a fresh SQLite store: the same
// migrations seed the same rows on both engines), and whether any table
// holds rows at all.
func (p plan) nonEmpty(ctx context.Context, dst *sqlstore.DB) (bool, []string, error) {
	dir, err := os.MkdirTemp("", "blueprint-migrate-")
	if err != nil {
		return false, nil, fmt.Errorf("migrate: %w", err)
	}
	defer os.RemoveAll(dir)
	fresh, err := sqlstore.Open(ctx, filepath.Join(dir, "fresh.db"))
	if err != nil {
		return false, nil, err
	}
	defer fresh.Close()
	freshTables, err := fresh.Tables(ctx)
	if err != nil {
		return false, nil, err
	}
	var out []string
	some := false
	for _, t := range p.tables {
		n, err := count(ctx, dst.R, t.name)
		if err != nil {
			return false, nil, err
		}
		var seed int64
		if slices.Contains(freshTables, t.name) {
			if seed, err = count(ctx, fresh.R, t.name); err != nil {
				return false, nil, err
			}
		}
		some = some || n > 0
		if n > seed {
			out = append(out, t.name)
		}
	}
	return some, out, nil
}

// truncate empties the target's tables. The ledger's append-only
// triggers refuse TRUNCATE, so user triggers are off while it runs (in one
// transaction: another session never sees them off).
func (p plan) truncate(ctx context.Context, dst *sqlstore.DB) error {
	names := make([]string, len(p.tables))
	for i, t := range p.tables {
		names[i] = sqlstore.QuoteIdent(t.name)
	}
	return dst.Tx(ctx, func(tx *sql.Tx) error {
		for _, n := range names {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+n+` DISABLE TRIGGER USER`); err != nil {
				return fmt.Errorf("migrate: truncate: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `TRUNCATE `+strings.Join(names, ", ")+` CASCADE`); err != nil {
			return fmt.Errorf("migrate: truncate: %w", err)
		}
		for _, n := range names {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+n+` ENABLE TRIGGER USER`); err != nil {
				return fmt.Errorf("migrate: truncate: %w", err)
			}
		}
		return nil
	})
}

func copyTable(ctx context.Context, snap *sql.Tx, dst *sqlstore.DB, t table, batch int, bar *progressbar.ProgressBar) error {
	batch = max(1, min(batch, 65535/len(t.cols)))
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = sqlstore.QuoteIdent(c.name)
	}
	rows, err := snap.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+sqlstore.QuoteIdent(t.name))
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", t.name, err)
	}
	defer rows.Close()
	head := `INSERT INTO ` + sqlstore.QuoteIdent(t.name) + ` (` + strings.Join(names, ", ") + `) VALUES `
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	var args []any
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		q := head + strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ")
		if _, err := dst.W.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("migrate: write %s: %w", t.name, err)
		}
		if bar != nil {
			bar.Add(n)
		}
		args, n = args[:0], 0
		return nil
	}
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("migrate: read %s: %w", t.name, err)
		}
		for i, c := range t.cols {
			v, err := convert(vals[i], c.kind)
			if err != nil {
				return fmt.Errorf("migrate: %s.%s: %w", t.name, c.name, err)
			}
			args = append(args, v)
		}
		n++
		if n == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: read %s: %w", t.name, err)
	}
	return flush()
}

// convert turns a value read from either engine into the canonical Go
// value of the column's kind: int64, float64, string or []byte (or nil).
func convert(v any, k kind) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch k {
	case kindInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
				return int64(x), nil
			}
		case string:
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n, nil
			}
		case []byte:
			if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return n, nil
			}
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		}
	case kindFloat:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		case string:
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				return f, nil
			}
		}
	case kindText:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
	case kindBytes:
		switch x := v.(type) {
		case []byte:
			return slices.Clone(x), nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("a %T value (%v) does not fit the target column", v, v)
}

// resetSequences moves every sequence behind an identity or serial column
// past the largest ID copied, so that new rows do not collide.
func resetSequences(ctx context.Context, dst *sqlstore.DB) error {
	rows, err := dst.R.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')`)
	if err != nil {
		return fmt.Errorf("migrate: sequences: %w", err)
	}
	type col struct{ table, column string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.column); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: sequences: %w", err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: sequences: %w", err)
	}
	for _, c := range cols {
		t, k := sqlstore.QuoteIdent(c.table), sqlstore.QuoteIdent(c.column)
		q := `SELECT setval(pg_get_serial_sequence(?, ?), GREATEST(COALESCE(MAX(` + k + `), 0), 1), COALESCE(MAX(` + k + `), 0) > 0) FROM ` + t
		if _, err := dst.W.ExecContext(ctx, q, t, c.column); err != nil {
			return fmt.Errorf("migrate: sequence of %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}

func (p plan) verify(ctx context.Context, snap *sql.Tx, dst *sqlstore.DB) (Report, error) {
	var r Report
	for _, t := range p.tables {
		sn, ss, err := checksum(ctx, snap, t)
		if err != nil {
			return r, err
		}
		dn, ds, err := checksum(ctx, dst.R, t)
		if err != nil {
			return r, err
		}
		r.Tables = append(r.Tables, Table{Name: t.name, SourceRows: sn, TargetRows: dn, SourceChecksum: ss, TargetChecksum: ds})
	}
	return r, nil
}

// checksum returns the rows of t and a checksum over them: each row is
// encoded canonically (per column: a type tag and the value; integers
// and floats in decimal, text and bytes with their length) and hashed
// with SHA-256, and the row hashes are added lane by lane (four 64-bit
// lanes, modulo 2^64). The sum does not depend on the order rows come
// in, which differs between the engines.
func checksum(ctx context.Context, q queryer, t table) (int64, string, error) {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = sqlstore.QuoteIdent(c.name)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+sqlstore.QuoteIdent(t.name))
	if err != nil {
		return 0, "", fmt.Errorf("migrate: checksum %s: %w", t.name, err)
	}
	defer rows.Close()
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var sum [4]uint64
	var n int64
	var buf []byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, "", fmt.Errorf("migrate: checksum %s: %w", t.name, err)
		}
		buf = buf[:0]
		for i, c := range t.cols {
			v, err := convert(vals[i], c.kind)
			if err != nil {
				return 0, "", fmt.Errorf("migrate: checksum %s.%s: %w", t.name, c.name, err)
			}
			buf = encode(buf, v)
		}
		h := sha256.Sum256(buf)
		for l := range sum {
			sum[l] += binary.BigEndian.Uint64(h[l*8:])
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, "", fmt.Errorf("migrate: checksum %s: %w", t.name, err)
	}
	var out [32]byte
	for l := range sum {
		binary.BigEndian.PutUint64(out[l*8:], sum[l])
	}
	h := sha256.Sum256(out[:])
	return n, hex.EncodeToString(h[:8]), nil
}

// encode appends the canonical encoding of a converted value.
func encode(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 'N', ';')
	case int64:
		b = append(b, 'i')
		b = strconv.AppendInt(b, x, 10)
		return append(b, ';')
	case float64:
		b = append(b, 'f')
		b = strconv.AppendFloat(b, x, 'g', -1, 64)
		return append(b, ';')
	case string:
		b = append(b, 's')
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		return append(b, x...)
	case []byte:
		b = append(b, 'b')
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		return append(b, x...)
	}
	return append(b, '?')
}
