// Package pgrepl routes queries over one PostgreSQL cluster — a primary
// with streaming replicas — with read-your-writes: writes go to the
// primary, which returns the WAL position (LSN) after the commit; a read
// that carries that LSN goes to a replica only if the replica has replayed
// at least that far, and otherwise to the primary. Reads without an LSN
// (anonymous traffic, data the caller did not write) go to any healthy
// replica.
//
// Replicas are probed in the background (replayed LSN, health, lag); a
// replica that stops answering is routed around until it answers again. If
// the primary stops answering or turns out to be in recovery, the router
// looks for a server among its nodes that is not in recovery — a replica an
// operator or Patroni promoted — and follows it.
//
// The bug this design avoids (research/database.md, "read-your-writes done
// wrong"): routing a user's reads to the primary "for N seconds after a
// write" is both too long (load) and too short (a lagging replica). The LSN
// is exact.
package pgrepl

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
)

// LSN is a WAL position; 0 means "no write to wait for".
type LSN uint64

// ParseLSN parses PostgreSQL's "X/Y" notation (two hexadecimal numbers of
// at most 32 bits).
func ParseLSN(s string) (LSN, error) {
	hs, ls, ok := strings.Cut(s, "/")
	hi, err1 := strconv.ParseUint(hs, 16, 32)
	lo, err2 := strconv.ParseUint(ls, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("pgrepl: bad LSN %q", s)
	}
	return LSN(hi<<32 | lo), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// Config configures a Router.
type Config struct {
	Nodes         []string      // connection URLs; the first is the primary at start
	ProbeInterval time.Duration // default 100ms
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// Open opens one node's pool; default a pgx pool wrapped by Connector
	// (commits return their LSN in the same round trip). The platform
	// passes its own, which adapts its SQL to PostgreSQL.
	Open func(url string) (*sql.DB, error)
	// MaxConns is every node pool's size, open and idle alike (default
	// 16): with fewer idle than open connections, the pool closes and
	// reopens connections under load (database/sql keeps 2 idle by
	// default).
	MaxConns int
}

type node struct {
	url      string
	db       *sql.DB
	healthy  atomic.Bool
	standby  atomic.Bool
	replayed atomic.Uint64 // last replayed LSN (replicas)
	lagBytes atomic.Int64
}

// Router routes queries over the cluster's nodes.
type Router struct {
	cfg     Config
	nodes   []*node
	primary atomic.Pointer[node]
	// replicas holds the healthy standbys as of the last probe (the only
	// writer of healthy and standby), so that Reader neither scans nor
	// allocates.
	replicas atomic.Pointer[[]*node]
	next     atomic.Uint64 // round robin over replicas

	cancel context.CancelFunc
	wg     sync.WaitGroup

	reads    *prometheus.CounterVec
	failover prometheus.Counter
	// The reads counters, resolved once: WithLabelValues hashes the
	// label and takes a lock on every call.
	readReplica, readBehind, readNoReplica prometheus.Counter
}

// Open connects to every node and starts probing them.
func Open(ctx context.Context, cfg Config) (*Router, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("pgrepl: no nodes")
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	open := cfg.Open
	if open == nil {
		open = openPool
	}
	r := &Router{cfg: cfg,
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "db", Name: "reads_total", Help: "Reads routed, by target (replica, or primary and why).",
		}, []string{"target"}),
		failover: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "db", Name: "primary_changes_total", Help: "Times the router followed a new primary.",
		}),
	}
	r.readReplica = r.reads.WithLabelValues("replica")
	r.readBehind = r.reads.WithLabelValues("primary_replicas_behind")
	r.readNoReplica = r.reads.WithLabelValues("primary_no_replica")
	for i, u := range cfg.Nodes {
		db, err := open(u)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("pgrepl: node %d: %w", i, err)
		}
		db.SetMaxOpenConns(cfg.MaxConns)
		db.SetMaxIdleConns(cfg.MaxConns)
		r.nodes = append(r.nodes, &node{url: u, db: db})
	}
	r.primary.Store(r.nodes[0])
	if cfg.Registerer != nil {
		lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "db", Name: "replica_lag_bytes_max", Help: "Largest WAL distance of a healthy replica behind the primary.",
		}, func() float64 { return float64(r.MaxLag()) })
		for _, c := range []prometheus.Collector{r.reads, r.failover, lag} {
			if err := cfg.Registerer.Register(c); err != nil {
				r.Close()
				return nil, fmt.Errorf("pgrepl: metrics: %w", err)
			}
		}
	}
	r.probe(ctx)
	if !r.primary.Load().healthy.Load() {
		r.Close()
		return nil, fmt.Errorf("pgrepl: primary %s does not answer", redact(cfg.Nodes[0]))
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Go(func() {
		t := time.NewTicker(cfg.ProbeInterval)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				r.probe(runCtx)
			}
		}
	})
	return r, nil
}

// openPool is the default Config.Open: a pgx pool whose commits also
// return the WAL position (Connector).
func openPool(u string) (*sql.DB, error) {
	cc, err := pgx.ParseConfig(u)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(Connector(stdlib.GetConnector(*cc))), nil
}

func redact(u string) string { return fmt.Sprintf("node(%d chars)", len(u)) }

// Close stops probing and closes every pool.
func (r *Router) Close() error {
	if r.cancel != nil {
		r.cancel()
		r.wg.Wait()
	}
	var errs []error
	for _, n := range r.nodes {
		errs = append(errs, n.db.Close())
	}
	return errors.Join(errs...)
}

// probe refreshes every node's health, role and replayed LSN, and follows
// a promoted replica when the primary is gone or demoted.
func (r *Router) probe(ctx context.Context) {
	var primaryLSN LSN
	for _, n := range r.nodes {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		var standby bool
		var lsn pgtype.Text
		err := n.db.QueryRowContext(pctx, `SELECT pg_is_in_recovery(),
			CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END`).Scan(&standby, &lsn)
		cancel()
		if err != nil {
			if n.healthy.Swap(false) {
				r.cfg.Logger.Warn("database node stopped answering; routing around it", "node", redact(n.url), "err", err)
			}
			continue
		}
		if !n.healthy.Swap(true) {
			r.cfg.Logger.Info("database node answers", "node", redact(n.url), "standby", standby)
		}
		n.standby.Store(standby)
		if lsn.Valid {
			l, _ := ParseLSN(lsn.String)
			n.replayed.Store(uint64(l))
			if !standby {
				primaryLSN = l
			}
		}
	}
	p := r.primary.Load()
	if !p.healthy.Load() || p.standby.Load() {
		for _, n := range r.nodes {
			if n != p && n.healthy.Load() && !n.standby.Load() {
				r.primary.Store(n)
				r.failover.Inc()
				r.cfg.Logger.Warn("following a new primary", "node", redact(n.url))
				break
			}
		}
	}
	if primaryLSN != 0 {
		for _, n := range r.nodes {
			if n.standby.Load() {
				n.lagBytes.Store(int64(primaryLSN) - int64(n.replayed.Load()))
			}
		}
	}
	r.snapshotReplicas()
}

// snapshotReplicas publishes the healthy standbys for Reader, keeping the
// current snapshot when it has not changed.
func (r *Router) snapshotReplicas() {
	var reps []*node
	for _, n := range r.nodes {
		if n.healthy.Load() && n.standby.Load() {
			reps = append(reps, n)
		}
	}
	if old := r.replicas.Load(); old != nil && slices.Equal(*old, reps) {
		return
	}
	r.replicas.Store(&reps)
}

// MaxLag returns the largest WAL distance, in bytes, of a healthy replica
// behind the primary at the last probe.
func (r *Router) MaxLag() int64 {
	var m int64
	for _, n := range r.nodes {
		if n.healthy.Load() && n.standby.Load() {
			m = max(m, n.lagBytes.Load())
		}
	}
	return m
}

// Primary returns the pool of the current primary.
func (r *Router) Primary() *sql.DB { return r.primary.Load().db }

// Write runs fn in a transaction on the primary and returns the LSN the
// caller's later reads must see: the WAL insert position just after the
// commit, on the same connection. With the default pools (Connector) it
// comes back with the COMMIT, in the same round trip; with pools opened by
// Config.Open without Connector it costs one more query.
func (r *Router) Write(ctx context.Context, fn func(*sql.Tx) error) (LSN, error) {
	c, err := r.Primary().Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("pgrepl: begin: %w", err)
	}
	defer c.Close()
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("pgrepl: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("pgrepl: commit: %w", err)
	}
	var lsn LSN
	c.Raw(func(dc any) error {
		if lc, ok := dc.(*conn); ok {
			lsn = lc.lsn
		}
		return nil
	})
	if lsn != 0 {
		return lsn, nil
	}
	// The commit record ends at or before the insert position.
	var s string
	if err := c.QueryRowContext(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("pgrepl: lsn: %w", err)
	}
	return ParseLSN(s)
}

// Reader returns a pool to read from that has replayed at least after: a
// healthy replica that is known to be caught up (or is, when asked now),
// otherwise the primary.
func (r *Router) Reader(ctx context.Context, after LSN) *sql.DB {
	var replicas []*node
	if p := r.replicas.Load(); p != nil {
		replicas = *p
	}
	if len(replicas) == 0 {
		r.readNoReplica.Inc()
		return r.Primary()
	}
	start := int(r.next.Add(1))
	for i := range replicas {
		n := replicas[(start+i)%len(replicas)]
		if LSN(n.replayed.Load()) >= after {
			r.readReplica.Inc()
			return n.db
		}
	}
	// The probe may be behind the replicas: ask one now.
	n := replicas[start%len(replicas)]
	var s pgtype.Text
	qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := n.db.QueryRowContext(qctx, `SELECT pg_last_wal_replay_lsn()::text`).Scan(&s); err == nil && s.Valid {
		if l, err := ParseLSN(s.String); err == nil {
			n.replayed.Store(uint64(l))
			if l >= after {
				r.readReplica.Inc()
				return n.db
			}
		}
	}
	r.readBehind.Inc()
	return r.Primary()
}

// Status is one node as the operator sees it.
type Status struct {
	Node     int    `json:"node"`
	Role     string `json:"role"` // primary, replica, down
	Replayed string `json:"replayed_lsn,omitempty"`
	LagBytes int64  `json:"lag_bytes"`
}

// Status returns the nodes' roles and lag.
func (r *Router) Status() []Status {
	var out []Status
	p := r.primary.Load()
	for i, n := range r.nodes {
		st := Status{Node: i, Role: "replica", Replayed: LSN(n.replayed.Load()).String(), LagBytes: n.lagBytes.Load()}
		switch {
		case !n.healthy.Load():
			st.Role = "down"
		case n == p:
			st.Role, st.LagBytes = "primary", 0
		}
		out = append(out, st)
	}
	return out
}
