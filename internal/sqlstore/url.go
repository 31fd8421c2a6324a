package sqlstore

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// IsPostgresURL reports whether u names a PostgreSQL database
// (postgres:// or postgresql://).
func IsPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// OpenURL opens the store named by a database.url: sqlite:PATH, a
// postgres:// or postgresql:// URL, or "" for the SQLite file defaultPath.
func OpenURL(ctx context.Context, u, defaultPath string) (*DB, error) {
	switch {
	case u == "":
		return Open(ctx, defaultPath)
	case IsPostgresURL(u):
		return OpenPostgres(ctx, u)
	}
	path, ok := strings.CutPrefix(u, "sqlite:")
	if !ok || path == "" {
		return nil, errors.New("sqlstore: database URL must be sqlite:PATH, postgres://… or postgresql://…")
	}
	return Open(ctx, path)
}

// Redact returns u with its password (and any password parameter)
// replaced by "REDACTED", fit for logs and status pages. A URL that does not
// parse is not shown at all.
func Redact(u string) string {
	if !IsPostgresURL(u) {
		return u
	}
	p, err := url.Parse(u)
	if err != nil {
		return "postgres://(unparsable URL not shown)"
	}
	if _, has := p.User.Password(); has {
		p.User = url.UserPassword(p.User.Username(), "REDACTED")
	}
	q := p.Query()
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q.Set(k, "REDACTED")
		}
	}
	if len(q) > 0 {
		p.RawQuery = q.Encode()
	}
	return p.String()
}

// Path returns the SQLite file of the store ("" on PostgreSQL).
func (db *DB) Path() string { return db.path }
