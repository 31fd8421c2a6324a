package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
)

// Rewrite turns the store's SQL dialect — SQLite's, as the services write
// it — into PostgreSQL's:
//
//   - positional parameters ? become $1, $2, … and numbered ones ?N become $N;
//   - INSERT OR IGNORE INTO … becomes INSERT INTO … ON CONFLICT DO NOTHING
//     (before a RETURNING clause if there is one);
//   - unixepoch() becomes the current Unix time as a bigint.
//
// Quoted strings ('…', "…", $$…$$), quoted identifiers and comments are
// left alone. The result is cached per query text.
func Rewrite(q string) string {
	if v, ok := rewritten.Load(q); ok {
		return v.(string)
	}
	out := rewrite(q)
	rewritten.Store(q, out)
	return out
}

var rewritten sync.Map

func rewrite(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	orIgnore := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"': // quoted: copy to the closing quote
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(q))
			b.WriteString(q[i:end])
			i = end - 1
		case c == '$' && i+1 < len(q) && !(q[i+1] >= '0' && q[i+1] <= '9') && (i == 0 || !isIdent(q[i-1])): // dollar-quoted string
			end := dollarQuoted(q, i)
			b.WriteString(q[i:end])
			i = end - 1
		case c == '/' && i+1 < len(q) && q[i+1] == '*': // block comment
			j := strings.Index(q[i+2:], "*/")
			end := len(q)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(q[i:end])
			i = end - 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-': // line comment
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j - 1
		case c == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			if j > i+1 {
				b.WriteString("$" + q[i+1:j])
			} else {
				n++
				b.WriteString("$" + strconv.Itoa(n))
			}
			i = j - 1
		case (c == 'I' || c == 'i') && hasWordAt(q, i, "INSERT OR IGNORE"):
			b.WriteString("INSERT")
			i += len("INSERT OR IGNORE") - 1
			orIgnore = true
		case (c == 'u' || c == 'U') && hasWordAt(q, i, "unixepoch()"):
			b.WriteString("CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)")
			i += len("unixepoch()") - 1
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	if orIgnore {
		trimmed := strings.TrimRight(out, " \t\n;")
		if k := lastWord(trimmed, "RETURNING"); k >= 0 {
			out = trimmed[:k] + "ON CONFLICT DO NOTHING " + trimmed[k:]
		} else {
			out = trimmed + " ON CONFLICT DO NOTHING"
		}
	}
	return out
}

// dollarQuoted returns the end of the dollar-quoted string ($$…$$ or
// $tag$…$tag$) starting at q[i], or i+1 when q[i] starts none.
func dollarQuoted(q string, i int) int {
	j := i + 1
	for j < len(q) && isIdent(q[j]) {
		j++
	}
	if j >= len(q) || q[j] != '$' {
		return i + 1
	}
	tag := q[i : j+1]
	k := strings.Index(q[j+1:], tag)
	if k < 0 {
		return len(q)
	}
	return j + 1 + k + len(tag)
}

// hasWordAt reports whether q has word (case-insensitive) at i, not as
// part of a longer identifier.
func hasWordAt(q string, i int, word string) bool {
	if len(q)-i < len(word) || !strings.EqualFold(q[i:i+len(word)], word) {
		return false
	}
	if i > 0 && isIdent(q[i-1]) {
		return false
	}
	end := i + len(word)
	return end == len(q) || !isIdent(q[end]) || word[len(word)-1] == ')'
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func lastWord(q, word string) int {
	up := strings.ToUpper(q)
	for k := strings.LastIndex(up, word); k >= 0; k = strings.LastIndex(up[:k], word) {
		if hasWordAt(q, k, word) {
			return k
		}
	}
	return -1
}

// pgConnector opens pgx connections that rewrite the store's dialect.
// ids caches, per table, whether the table numbers its rows with an
// identity (or serial) id column.
type pgConnector struct {
	inner   driver.Connector
	ids     *sync.Map           // table name -> bool
	observe prometheus.Observer // query latency; may be nil
}

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{Conn: conn.(*stdlib.Conn), ids: c.ids, observe: c.observe}, nil
}

func (c pgConnector) Driver() driver.Driver { return c.inner.Driver() }

// pgConn is a pgx stdlib connection whose queries are rewritten and whose
// bool arguments become 0/1 (the store's flags are integers, as on SQLite).
type pgConn struct {
	*stdlib.Conn
	ids     *sync.Map
	observe prometheus.Observer
}

// timed observes the time since start, when the connection has an
// observer: one query's latency up to its first result.
func (c *pgConn) timed(start time.Time) {
	if c.observe != nil {
		c.observe.Observe(time.Since(start).Seconds())
	}
}

func (c *pgConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *pgConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	st, err := c.Conn.PrepareContext(ctx, Rewrite(q))
	if err != nil {
		return nil, err
	}
	return pgStmt{st.(*stdlib.Stmt)}, nil
}

// pgStmt is a prepared statement whose arguments are converted (intArgs).
type pgStmt struct{ *stdlib.Stmt }

func (s pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.Stmt.ExecContext(ctx, intArgs(args))
}

func (s pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return intRows(s.Stmt.QueryContext(ctx, intArgs(args)))
}

// intArgs turns bool arguments into 0 and 1: the store keeps flags in
// integer columns, as SQLite does.
func intArgs(args []driver.NamedValue) []driver.NamedValue {
	var out []driver.NamedValue
	for i, a := range args {
		if b, ok := a.Value.(bool); ok {
			if out == nil {
				out = append([]driver.NamedValue(nil), args...)
			}
			out[i].Value = int64(0)
			if b {
				out[i].Value = int64(1)
			}
		}
	}
	if out == nil {
		return args
	}
	return out
}

// ExecContext runs q rewritten. A single INSERT into a table with an
// identity id column and no RETURNING clause of its own runs with
// RETURNING id, so that Result.LastInsertId works as it does on SQLite
// (the id of the last row inserted).
func (c *pgConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	defer c.timed(time.Now())
	rq := Rewrite(q)
	args = intArgs(args)
	if table := insertTable(rq); table != "" && c.hasIdentity(ctx, table) {
		rows, err := c.Conn.QueryContext(ctx, strings.TrimRight(rq, " \t\r\n;")+" RETURNING id", args)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var res insertResult
		dest := make([]driver.Value, 1)
		for {
			err := rows.Next(dest)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			res.n++
			if id, ok := dest[0].(int64); ok {
				res.id = id
			}
		}
		return res, nil
	}
	return c.Conn.ExecContext(ctx, rq, args)
}

func (c *pgConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	defer c.timed(time.Now())
	return intRows(c.Conn.QueryContext(ctx, Rewrite(q), intArgs(args)))
}

// pgRows are result rows whose bool values become 0 and 1, as SQLite
// returns them (SELECT EXISTS(…) scans into an int on both engines; a
// *bool destination still takes 0 and 1).
type pgRows struct{ *stdlib.Rows }

func (r pgRows) Next(dest []driver.Value) error {
	if err := r.Rows.Next(dest); err != nil {
		return err
	}
	for i, v := range dest {
		if b, ok := v.(bool); ok {
			dest[i] = int64(0)
			if b {
				dest[i] = int64(1)
			}
		}
	}
	return nil
}

func intRows(rows driver.Rows, err error) (driver.Rows, error) {
	if err != nil {
		return nil, err
	}
	if r, ok := rows.(*stdlib.Rows); ok {
		return pgRows{r}, nil
	}
	return rows, nil
}

// hasIdentity reports whether table has an id column filled by an identity
// or a sequence. An answer is cached once the table exists.
func (c *pgConn) hasIdentity(ctx context.Context, table string) bool {
	if v, ok := c.ids.Load(table); ok {
		return v.(bool)
	}
	var exists, identity bool
	err := c.Conn.Conn().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1),
		EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'id'
			AND (is_identity = 'YES' OR column_default LIKE 'nextval(%'))`, table).Scan(&exists, &identity)
	if err != nil {
		return false
	}
	if exists {
		c.ids.Store(table, identity)
	}
	return identity
}

// insertResult is the Result of an INSERT run with RETURNING id.
type insertResult struct{ n, id int64 }

func (r insertResult) LastInsertId() (int64, error) { return r.id, nil }
func (r insertResult) RowsAffected() (int64, error) { return r.n, nil }

// insertTable returns the (lower-case, unquoted) table of q when q is one
// INSERT statement without a RETURNING clause, or "".
func insertTable(q string) string {
	q = strings.TrimRight(strings.TrimSpace(q), "; \t\r\n")
	if len(q) < 12 || !strings.EqualFold(q[:7], "INSERT ") || strings.ContainsRune(q, ';') || lastWord(q, "RETURNING") >= 0 {
		return ""
	}
	rest := strings.TrimSpace(q[7:])
	if len(rest) < 5 || !strings.EqualFold(rest[:5], "INTO ") {
		return ""
	}
	rest = strings.TrimSpace(rest[5:])
	end := 0
	for end < len(rest) && isIdent(rest[end]) {
		end++
	}
	if end == 0 || end < len(rest) && rest[end] == '.' {
		return ""
	}
	return strings.ToLower(rest[:end])
}

// openPostgres returns a pool of rewriting connections to url whose
// queries' latency goes to observe (when not nil).
func openPostgres(url string, observe prometheus.Observer) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("sqlstore: bad PostgreSQL URL (not shown: it may hold a password)")
	}
	return sql.OpenDB(pgConnector{inner: stdlib.GetConnector(*cfg), ids: new(sync.Map), observe: observe}), nil
}
