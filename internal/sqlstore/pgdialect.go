package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Rewrite turns the store's SQL dialect — SQLite's, as the services write
// it — into PostgreSQL's:
//
//   - positional parameters ? become $1, $2, … and numbered ones ?N become $N;
//   - INSERT OR IGNORE INTO … becomes INSERT INTO … ON CONFLICT DO NOTHING
//     (before a RETURNING clause if there is one);
//   - unixepoch() becomes the current Unix time as a bigint.
//
// Quoted strings, quoted identifiers and comments are left alone. The
// result is cached per query text.
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
type pgConnector struct{ inner driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{conn.(*stdlib.Conn)}, nil
}

func (c pgConnector) Driver() driver.Driver { return c.inner.Driver() }

// pgConn is a pgx stdlib connection whose queries are rewritten.
type pgConn struct{ *stdlib.Conn }

func (c *pgConn) Prepare(q string) (driver.Stmt, error) { return c.Conn.Prepare(Rewrite(q)) }

func (c *pgConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, Rewrite(q))
}

func (c *pgConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, Rewrite(q), args)
}

func (c *pgConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, Rewrite(q), args)
}

// openPostgres returns a pool of rewriting connections to url.
func openPostgres(url string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("sqlstore: bad PostgreSQL URL (not shown: it may hold a password)")
	}
	return sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)}), nil
}
