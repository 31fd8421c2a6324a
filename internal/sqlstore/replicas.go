package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/sqlstore/pgrepl"
)

// Options are the optional parts of opening a store.
type Options struct {
	// Replicas are the connection URLs of PostgreSQL streaming replicas of
	// the database URL's server (database.replicas). Display reads of web
	// requests go to them once they have replayed the caller's last write
	// (see Read and ReadYourWrites). PostgreSQL only.
	Replicas   []string
	Logger     *slog.Logger
	Registerer prometheus.Registerer // the router's metrics: reads by target, replica lag
}

// OpenURLWith is OpenURL with Options. On PostgreSQL with a Registerer,
// every query's latency (to its first result) is observed in
// blueprint_db_query_duration_seconds{server}: "primary" for the URL,
// "replica1", "replica2", … for the replicas in their configured order.
func OpenURLWith(ctx context.Context, u, defaultPath string, o Options) (*DB, error) {
	if len(o.Replicas) > 0 && !IsPostgresURL(u) {
		return nil, fmt.Errorf("sqlstore: database.replicas needs a postgres:// database.url")
	}
	for i, r := range o.Replicas {
		if !IsPostgresURL(r) {
			return nil, fmt.Errorf("sqlstore: database.replicas[%d] is not a postgres:// URL", i)
		}
	}
	if !IsPostgresURL(u) {
		return OpenURL(ctx, u, defaultPath)
	}
	observer, err := queryLatency(o.Registerer)
	if err != nil {
		return nil, err
	}
	db, err := openPostgresStore(ctx, u, observer("primary"))
	if err != nil || len(o.Replicas) == 0 {
		return db, err
	}
	servers := map[string]string{u: "primary"}
	for i, r := range o.Replicas {
		servers[r] = fmt.Sprintf("replica%d", i+1)
	}
	router, err := pgrepl.Open(ctx, pgrepl.Config{
		Nodes:      append([]string{u}, o.Replicas...),
		Logger:     o.Logger,
		Registerer: o.Registerer,
		Open: func(url string) (*sql.DB, error) {
			pool, err := openPostgres(url, observer(servers[url]))
			if err != nil {
				return nil, err
			}
			return pool, nil // pgrepl sizes it (Config.MaxConns)
		},
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: replicas: %w", err)
	}
	db.repl = router
	return db, nil
}

// queryLatency registers the query latency histogram with reg and returns
// its observer per server; without reg, observers are nil.
func queryLatency(reg prometheus.Registerer) (func(server string) prometheus.Observer, error) {
	if reg == nil {
		return func(string) prometheus.Observer { return nil }, nil
	}
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "blueprint", Subsystem: "db", Name: "query_duration_seconds",
		Help:    "Latency of the SQL store's queries on PostgreSQL, to the first result, by server (primary, replicaN).",
		Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
	}, []string{"server"})
	if err := reg.Register(h); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return nil, fmt.Errorf("sqlstore: metrics: %w", err)
		}
		h = are.ExistingCollector.(*prometheus.HistogramVec)
	}
	return func(server string) prometheus.Observer { return h.WithLabelValues(server) }, nil
}

// OpenPool returns a pool of connections to the PostgreSQL server at url
// that take the store's SQL (SQLite's dialect, see Rewrite) as well as
// PostgreSQL's own, their queries' latency observed by observe (may be
// nil); for routers that open their own pools (shard).
func OpenPool(url string, observe prometheus.Observer) (*sql.DB, error) {
	return openPostgres(url, observe)
}

// QueryLatency returns the observer of blueprint_db_query_duration_seconds
// for a server label, registering the histogram with reg once; without
// reg the observers are nil.
func QueryLatency(reg prometheus.Registerer) (func(server string) prometheus.Observer, error) {
	return queryLatency(reg)
}

type readAfterKey struct{}

// WithReplicaReads marks ctx as allowing reads through Read to go to a
// streaming replica that has replayed at least the WAL position after (0:
// any healthy replica). Contexts without the mark read from the primary.
func WithReplicaReads(ctx context.Context, after pgrepl.LSN) context.Context {
	return context.WithValue(ctx, readAfterKey{}, after)
}

// WithPrimaryReads undoes WithReplicaReads for ctx: reads through Read go
// to the primary. Loaders of shared caches use it, so that a replica that
// is behind never fills a cache every process then serves.
func WithPrimaryReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, readAfterKey{}, primaryOnly{})
}

type primaryOnly struct{}

// Read returns the pool for a read that may be served by a replica: with
// database.replicas and a context marked by WithReplicaReads, a replica
// that has replayed the caller's last write (else the primary); otherwise
// R. Use it for what a page displays, never for a read that a write in the
// same request depends on (a balance before a debit): those use R.
func (db *DB) Read(ctx context.Context) *sql.DB {
	if db.repl == nil {
		return db.R
	}
	after, ok := ctx.Value(readAfterKey{}).(pgrepl.LSN)
	if !ok {
		return db.R
	}
	return db.repl.Reader(ctx, after)
}

// HasReplicas reports whether reads may be routed to replicas.
func (db *DB) HasReplicas() bool { return db.repl != nil }

// Routing returns the replica router's view of the nodes (roles, replayed
// WAL, lag), or nil without replicas.
func (db *DB) Routing() []pgrepl.Status {
	if db.repl == nil {
		return nil
	}
	return db.repl.Status()
}

// WritePosition returns the primary's current WAL insert position: every
// write committed before the call is at or before it (the insert position,
// not pg_current_wal_lsn(), which after an asynchronous commit may still
// lie before the commit record). 0 on SQLite.
func (db *DB) WritePosition(ctx context.Context) (pgrepl.LSN, error) {
	if db.Dialect != Postgres {
		return 0, nil
	}
	var s string
	if err := db.W.QueryRowContext(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("sqlstore: WAL position: %w", err)
	}
	return pgrepl.ParseLSN(s)
}

// ReadAfterCookie and ReadAfterHeader carry a client's last write position
// between its requests: the response to a write sets both, a later request
// sends either back. A client that forges a lower position only reads its
// own data staler; a higher one only sends its reads to the primary.
const (
	ReadAfterCookie = "bp_read_after"
	ReadAfterHeader = "X-Blueprint-Read-After"
)

// readAfterTTL is how long the cookie lives: a replica further behind than
// this is expected to have been routed around long before.
const readAfterTTL = time.Hour

// ReadYourWrites wraps a web handler for replica reads (without replicas it
// returns next as is). A GET or HEAD request reads through replicas that
// have replayed the position its client last wrote (the cookie or header);
// any other request reads from the primary, and its response carries the
// primary's WAL position taken when the handler starts to answer — after
// its writes committed — so the client's next page sees them.
func (db *DB) ReadYourWrites(next http.Handler) http.Handler {
	if db.repl == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			var after pgrepl.LSN
			v := r.Header.Get(ReadAfterHeader)
			if c, err := r.Cookie(ReadAfterCookie); err == nil && v == "" {
				v = c.Value
			}
			if v != "" {
				after, _ = pgrepl.ParseLSN(strings.Replace(v, "-", "/", 1)) // an unparsable value reads as 0
			}
			next.ServeHTTP(w, r.WithContext(WithReplicaReads(r.Context(), after)))
			return
		}
		next.ServeHTTP(&positionWriter{ResponseWriter: w, db: db, ctx: r.Context()}, r)
	})
}

// positionWriter adds the WAL position to a write's response headers
// before the first byte of the response goes out.
type positionWriter struct {
	http.ResponseWriter
	db   *DB
	ctx  context.Context
	done bool
}

func (p *positionWriter) stamp() {
	if p.done {
		return
	}
	p.done = true
	lsn, err := p.db.WritePosition(p.ctx)
	if err != nil || lsn == 0 {
		return // reads of the next request may then be served by a replica that is behind; they are not wrong for anyone else
	}
	// "/" is not allowed in a cookie value without quoting: X-Y.
	v := strings.Replace(lsn.String(), "/", "-", 1)
	p.Header().Set(ReadAfterHeader, v)
	http.SetCookie(p.ResponseWriter, &http.Cookie{Name: ReadAfterCookie, Value: v, Path: "/",
		MaxAge: int(readAfterTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func (p *positionWriter) WriteHeader(code int) {
	p.stamp()
	p.ResponseWriter.WriteHeader(code)
}

func (p *positionWriter) Write(b []byte) (int, error) {
	p.stamp()
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *positionWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
