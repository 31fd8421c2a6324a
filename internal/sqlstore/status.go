package sqlstore

import (
	"context"
	"fmt"
	"sort"

	"github.com/blueprint-media/blueprint/internal/sqlstore/pgrepl"
)

// Status is the state of a store: engine, schema version, the rows in
// each table and, on PostgreSQL, the streaming replicas attached to it.
type Status struct {
	Engine   string        `json:"engine"`
	URL      string        `json:"url"` // redacted
	Version  int           `json:"schema_version"`
	Tables   []TableStatus `json:"tables"`
	Replicas []Replica     `json:"replicas,omitempty"`
	// Routing is the read router's view of database.url and
	// database.replicas (node 0 is database.url), when replicas are set.
	Routing []pgrepl.Status `json:"routing,omitempty"`
}

// TableStatus is one table's row count.
type TableStatus struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

// Replica is a streaming replica as its primary sees it
// (pg_stat_replication): LagBytes is the WAL the replica has not replayed
// yet, LagSeconds PostgreSQL's replay_lag.
type Replica struct {
	Name       string  `json:"name"`
	Addr       string  `json:"addr"`
	State      string  `json:"state"`
	SyncState  string  `json:"sync_state"`
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
}

// Tables returns the store's tables, sorted by name: the application's
// tables (migrations and the tables services create themselves), not the
// engine's own.
func (db *DB) Tables(ctx context.Context) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if db.Dialect == Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := db.R.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: tables: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlstore: tables: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: tables: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// QuoteIdent quotes a table or column name for either engine.
func QuoteIdent(name string) string {
	out := []byte{'"'}
	for i := 0; i < len(name); i++ {
		if name[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, name[i])
	}
	return string(append(out, '"'))
}

// Status reports the store's engine, schema version, row counts and
// replicas. url is shown redacted.
func (db *DB) Status(ctx context.Context, url string) (Status, error) {
	s := Status{Engine: db.Dialect, URL: Redact(url)}
	if s.URL == "" {
		s.URL = "sqlite:" + db.path
	}
	v, err := db.Version(ctx)
	if err != nil {
		return s, fmt.Errorf("sqlstore: version: %w", err)
	}
	s.Version = v
	s.Routing = db.Routing()
	names, err := db.Tables(ctx)
	if err != nil {
		return s, err
	}
	for _, n := range names {
		var c int64
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+QuoteIdent(n)).Scan(&c); err != nil {
			return s, fmt.Errorf("sqlstore: count %s: %w", n, err)
		}
		s.Tables = append(s.Tables, TableStatus{Name: n, Rows: c})
	}
	if db.Dialect == Postgres {
		rows, err := db.R.QueryContext(ctx, `SELECT COALESCE(application_name, ''), COALESCE(host(client_addr), 'local'), COALESCE(state, ''), COALESCE(sync_state, ''),
			COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::BIGINT, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::DOUBLE PRECISION
			FROM pg_stat_replication ORDER BY application_name, client_addr`)
		if err != nil {
			return s, fmt.Errorf("sqlstore: replicas: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var r Replica
			if err := rows.Scan(&r.Name, &r.Addr, &r.State, &r.SyncState, &r.LagBytes, &r.LagSeconds); err != nil {
				return s, fmt.Errorf("sqlstore: replicas: %w", err)
			}
			s.Replicas = append(s.Replicas, r)
		}
		if err := rows.Err(); err != nil {
			return s, fmt.Errorf("sqlstore: replicas: %w", err)
		}
	}
	return s, nil
}
