package shard

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/sqlstore/pgrepl"
)

// FencedCode is the SQLSTATE the fence trigger raises when a write reaches
// a cluster for a logical shard that cluster no longer owns (or is handing
// over). The Router treats it as "map changed": it reloads and retries.
const FencedCode = "BP001"

// Config configures a Router.
type Config struct {
	// Catalog is the catalog database's URL (required).
	Catalog string
	// PollInterval is how often the router checks the map version even
	// without a notification (default 1s).
	PollInterval time.Duration
	// PauseTimeout bounds how long a write waits for a paused shard
	// before it fails with ErrPaused (default 10s).
	PauseTimeout time.Duration
	// PollOnly turns LISTEN/NOTIFY off and follows the catalog by polling
	// alone (for a catalog behind PgBouncer in transaction mode, where
	// LISTEN does not work). A router that has not seen a move yet still
	// never loses a write: the source's fence refuses it and the router
	// reloads the map and retries.
	PollOnly bool
	// MaxOpenConns per cluster node (default 16).
	MaxOpenConns int
	Logger       *slog.Logger
	// Open opens one node's pool (default sql.Open("pgx", url)). The
	// platform passes sqlstore.OpenPool, whose connections also take its
	// SQLite-dialect SQL.
	Open func(url string) (*sql.DB, error)
}

// cluster is one physical cluster's pools.
type cluster struct {
	name    string
	cfg     ClusterConfig
	primary *sql.DB        // without replicas
	repl    *pgrepl.Router // with replicas: follows the primary across failovers
}

type snapshot struct {
	m        *Map
	clusters map[string]*cluster // immutable once stored
	changed  chan struct{}       // closed when a newer snapshot replaces this one
}

// Router routes queries by logical shard to the owning cluster. Create it
// with New, then Start; Stop releases it. It is safe for concurrent use.
type Router struct {
	cfg     Config
	catalog *Catalog

	snap atomic.Pointer[snapshot]

	mu        sync.Mutex // serialises reloads
	refreshMu sync.Mutex // one version check at a time from waiting writes

	cancel context.CancelFunc
	wg     sync.WaitGroup

	queries  *prometheus.CounterVec
	pauseSec prometheus.Histogram
	timeouts prometheus.Counter
	fenced   prometheus.Counter
	reloads  prometheus.Counter
	version  prometheus.GaugeFunc
}

// New returns a Router; it does no I/O and starts nothing.
func New(cfg Config) (*Router, error) {
	if cfg.Catalog == "" {
		return nil, errors.New("shard: Config.Catalog is required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.PauseTimeout <= 0 {
		cfg.PauseTimeout = 10 * time.Second
	}
	if cfg.MaxOpenConns <= 0 {
		cfg.MaxOpenConns = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{cfg: cfg,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "shard", Name: "queries_total",
			Help: "Queries routed, by cluster and role (write, read_primary, read_replica, fanout).",
		}, []string{"cluster", "role"}),
		pauseSec: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "shard", Name: "write_pause_seconds",
			Help:    "Time writes waited for a shard in a move's cutover pause.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "shard", Name: "pause_timeouts_total",
			Help: "Writes that gave up waiting for a paused shard.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "shard", Name: "fenced_retries_total",
			Help: "Writes refused by a cluster's fence (stale map) and retried after a reload.",
		}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "shard", Name: "map_reloads_total",
			Help: "Times a new shard-map version was loaded.",
		}),
	}
	r.version = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "blueprint", Subsystem: "shard", Name: "map_version",
		Help: "Version of the shard map in use.",
	}, func() float64 {
		if s := r.snap.Load(); s != nil {
			return float64(s.m.Version)
		}
		return 0
	})
	return r, nil
}

// Collectors returns the router's Prometheus collectors.
func (r *Router) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.queries, r.pauseSec, r.timeouts, r.fenced, r.reloads, r.version}
}

// Register registers the router's collectors.
func (r *Router) Register(reg prometheus.Registerer) error {
	for _, c := range r.Collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("shard: metrics: %w", err)
		}
	}
	return nil
}

// Start connects to the catalog, loads the map, opens the clusters' pools
// and starts following map changes (LISTEN/NOTIFY plus polling).
func (r *Router) Start(ctx context.Context) error {
	cat, err := OpenCatalog(ctx, r.cfg.Catalog)
	if err != nil {
		return err
	}
	r.catalog = cat
	if err := r.Reload(ctx); err != nil {
		cat.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Go(func() { r.poll(runCtx) })
	if !r.cfg.PollOnly {
		r.wg.Go(func() { r.listen(runCtx) })
	}
	return nil
}

// Stop stops following the map and closes every pool.
func (r *Router) Stop(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.snap.Load(); s != nil {
		for _, c := range s.clusters {
			c.close()
		}
	}
	if r.catalog != nil {
		return r.catalog.Close()
	}
	return nil
}

func (c *cluster) close() {
	if c.repl != nil {
		c.repl.Close()
	} else {
		c.primary.Close()
	}
}

func (r *Router) poll(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v, err := r.catalog.Version(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.cfg.Logger.Warn("shard: poll catalog", "err", err)
				}
				continue
			}
			if v != r.Map().Version {
				if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
					r.cfg.Logger.Warn("shard: reload map", "err", err)
				}
			}
		}
	}
}

// listen follows NOTIFYs on the catalog so a new version is seen within
// milliseconds; polling covers lost connections.
func (r *Router) listen(ctx context.Context) {
	for ctx.Err() == nil {
		conn, err := pgx.Connect(ctx, r.cfg.Catalog)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+NotifyChannel)
			// A change between the last load and LISTEN would be missed.
			if err == nil {
				err = r.Reload(ctx)
			}
			for err == nil {
				_, err = conn.WaitForNotification(ctx)
				if err == nil {
					err = r.Reload(ctx)
				}
			}
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		r.cfg.Logger.Warn("shard: catalog listener", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.PollInterval):
		}
	}
}

// Reload loads the map from the catalog now and, if it is newer than the
// one in use, switches to it (opening pools for new clusters) and wakes
// writes waiting on a paused shard.
func (r *Router) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.catalog.Load(ctx)
	if err != nil {
		return err
	}
	old := r.snap.Load()
	if old != nil && m.Version <= old.m.Version {
		return nil
	}
	clusters := map[string]*cluster{}
	var retired []*cluster
	for name, cc := range m.Clusters {
		if old != nil {
			if c, ok := old.clusters[name]; ok {
				if equalConfig(c.cfg, cc) {
					clusters[name] = c
					continue
				}
				retired = append(retired, c)
			}
		}
		nc, err := r.open(ctx, cc)
		if err != nil {
			for _, c := range clusters {
				if old == nil || old.clusters[c.name] != c {
					c.close()
				}
			}
			return err
		}
		clusters[name] = nc
	}
	r.snap.Store(&snapshot{m: m, clusters: clusters, changed: make(chan struct{})})
	if old != nil {
		close(old.changed)
	}
	// Pools of clusters whose URLs changed; queries still running on them
	// fail and are retried by their callers.
	for _, c := range retired {
		c.close()
	}
	r.reloads.Inc()
	r.cfg.Logger.Info("shard: map loaded", "version", m.Version)
	return nil
}

func equalConfig(a, b ClusterConfig) bool {
	if a.Primary != b.Primary || len(a.Replicas) != len(b.Replicas) {
		return false
	}
	for i := range a.Replicas {
		if a.Replicas[i] != b.Replicas[i] {
			return false
		}
	}
	return true
}

func (r *Router) open(ctx context.Context, cc ClusterConfig) (*cluster, error) {
	c := &cluster{name: cc.Name, cfg: cc}
	if len(cc.Replicas) > 0 {
		rr, err := pgrepl.Open(ctx, pgrepl.Config{Nodes: append([]string{cc.Primary}, cc.Replicas...), Logger: r.cfg.Logger, Open: r.cfg.Open})
		if err != nil {
			return nil, fmt.Errorf("shard: cluster %s: %w", cc.Name, err)
		}
		c.repl = rr
		return c, nil
	}
	open := r.cfg.Open
	if open == nil {
		open = func(url string) (*sql.DB, error) { return sql.Open("pgx", url) }
	}
	db, err := open(cc.Primary)
	if err != nil {
		return nil, fmt.Errorf("shard: cluster %s: %w", cc.Name, err)
	}
	db.SetMaxOpenConns(r.cfg.MaxOpenConns)
	db.SetMaxIdleConns(r.cfg.MaxOpenConns)
	c.primary = db
	return c, nil
}

// Map returns the map in use. Callers must not modify it.
func (r *Router) Map() *Map { return r.snap.Load().m }

// Handle is a logical shard as seen through the router. Its cluster is
// resolved at every call, so a Handle stays valid across moves.
type Handle struct {
	r     *Router
	shard int
}

// For returns the handle of the logical shard carried by id.
func (r *Router) For(id int64) (Handle, error) {
	if id <= 0 {
		return Handle{}, fmt.Errorf("%w: id %d", idgen.ErrBadID, id)
	}
	return Handle{r: r, shard: idgen.Shard(id)}, nil
}

// ForShard returns the handle of logical shard n.
func (r *Router) ForShard(n int) (Handle, error) {
	if n < 0 || n >= Shards {
		return Handle{}, fmt.Errorf("%w: %d", ErrBadShard, n)
	}
	return Handle{r: r, shard: n}, nil
}

// Shard returns the handle's logical shard.
func (h Handle) Shard() int { return h.shard }

// Cluster returns the name of the cluster that owns the shard now.
func (h Handle) Cluster() string { return h.r.Map().Owner[h.shard] }

// Paused reports whether writes to the shard are paused now.
func (h Handle) Paused() bool { return h.r.Map().State[h.shard] == StatePaused }

func (r *Router) clusterOf(shard int) (*cluster, *snapshot, error) {
	s := r.snap.Load()
	name := s.m.Owner[shard]
	c := s.clusters[name]
	if c == nil {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoCluster, name)
	}
	return c, s, nil
}

// Reader returns a pool to read the shard from: a replica of the owning
// cluster that has replayed at least after (see pgrepl), or its primary.
// Reads are not paused by a move: until the flip they see the source,
// which holds every committed row.
func (h Handle) Reader(ctx context.Context, after pgrepl.LSN) (*sql.DB, error) {
	c, _, err := h.r.clusterOf(h.shard)
	if err != nil {
		return nil, err
	}
	if c.repl == nil {
		h.r.queries.WithLabelValues(c.name, "read_primary").Inc()
		return c.primary, nil
	}
	db := c.repl.Reader(ctx, after)
	if db == c.repl.Primary() {
		h.r.queries.WithLabelValues(c.name, "read_primary").Inc()
	} else {
		h.r.queries.WithLabelValues(c.name, "read_replica").Inc()
	}
	return db, nil
}

// Write runs fn in a transaction on the primary of the shard's cluster and
// returns the WAL position after the commit (for read-your-writes through
// Reader). If the shard is in a move's cutover pause, Write first waits for
// the pause to end (at most Config.PauseTimeout, then ErrPaused); if the
// cluster refuses the write because it no longer owns the shard (a map this
// router has not seen yet), Write reloads the map and runs fn again on the
// new owner. So fn must only touch the database through tx, and may run
// more than once (every run but the last is rolled back).
func (h Handle) Write(ctx context.Context, fn func(*sql.Tx) error) (pgrepl.LSN, error) {
	r := h.r
	deadline := time.Now().Add(r.cfg.PauseTimeout)
	var waited time.Duration
	for {
		c, s, err := r.clusterOf(h.shard)
		if err != nil {
			return 0, err
		}
		if s.m.State[h.shard] == StatePaused {
			left := time.Until(deadline)
			if left <= 0 {
				r.timeouts.Inc()
				r.pauseSec.Observe(waited.Seconds())
				return 0, fmt.Errorf("%w: shard %d, waited %v", ErrPaused, h.shard, waited.Round(time.Millisecond))
			}
			t0 := time.Now()
			timer := time.NewTimer(min(left, pausedRecheck))
			select {
			case <-s.changed:
			case <-timer.C:
				// No notification (PollOnly, or a lost one): ask the catalog.
				r.refresh(ctx)
			case <-ctx.Done():
				timer.Stop()
				return 0, ctx.Err()
			}
			timer.Stop()
			waited += time.Since(t0)
			continue
		}
		lsn, err := c.write(ctx, fn)
		if IsFenced(err) {
			r.fenced.Inc()
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("%w: shard %d fenced on %s: %w", ErrPaused, h.shard, c.name, err)
			}
			if err := r.Reload(ctx); err != nil {
				return 0, err
			}
			if r.snap.Load() == s {
				// Not visible in the catalog yet (the mover fences before it
				// commits the pause): give it a moment.
				select {
				case <-s.changed:
				case <-time.After(10 * time.Millisecond):
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			continue
		}
		if waited > 0 {
			r.pauseSec.Observe(waited.Seconds())
		}
		r.queries.WithLabelValues(c.name, "write").Inc()
		return lsn, err
	}
}

func (c *cluster) write(ctx context.Context, fn func(*sql.Tx) error) (pgrepl.LSN, error) {
	if c.repl != nil {
		return c.repl.Write(ctx, fn)
	}
	tx, err := c.primary.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return 0, err
	}
	return 0, tx.Commit()
}

// pausedRecheck is how often a write waiting for a paused shard checks the
// catalog's version itself, in case no notification comes.
const pausedRecheck = 50 * time.Millisecond

// refresh reloads the map if the catalog's version moved. Concurrent
// callers do not pile up: one asks, the others wait for its snapshot.
func (r *Router) refresh(ctx context.Context) {
	if !r.refreshMu.TryLock() {
		return
	}
	defer r.refreshMu.Unlock()
	v, err := r.catalog.Version(ctx)
	if err != nil {
		r.cfg.Logger.Warn("shard: catalog version", "err", err)
		return
	}
	if v != r.Map().Version {
		if err := r.Reload(ctx); err != nil {
			r.cfg.Logger.Warn("shard: reload map", "err", err)
		}
	}
}

// IsFenced reports whether err is a cluster's refusal of a write to a
// logical shard that it is handing over or has handed over.
func IsFenced(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == FencedCode
}

// ClusterView is what a fan-out function sees of one cluster.
type ClusterView struct {
	Name string
	// DB is a pool to read from (a replica when the cluster has healthy
	// ones, else the primary).
	DB *sql.DB
	// Shards are the logical shards the cluster owns in the map version
	// the fan-out runs with. A query must filter on them (shard =
	// ANY($1)): a cluster may also hold rows of shards it does not own —
	// the partial copy of a shard being moved to it, or the kept rows of a
	// shard moved away — and without the filter those would be read twice.
	Shards []int32
}

// FanOut runs fn once per cluster, concurrently, and returns the first
// error. Clusters that own no shard are skipped.
func (r *Router) FanOut(ctx context.Context, fn func(ctx context.Context, c ClusterView) error) error {
	s := r.snap.Load()
	m := s.m
	g, gctx := errgroup.WithContext(ctx)
	for _, name := range m.ClusterNames() {
		shards := m.ShardsOf(name)
		if len(shards) == 0 {
			continue
		}
		c := s.clusters[name]
		if c == nil {
			return fmt.Errorf("%w: %q", ErrNoCluster, name)
		}
		db := c.primary
		if c.repl != nil {
			db = c.repl.Reader(ctx, 0)
		}
		r.queries.WithLabelValues(name, "fanout").Inc()
		g.Go(func() error { return fn(gctx, ClusterView{Name: name, DB: db, Shards: shards}) })
	}
	return g.Wait()
}

// Newest fans query out over every cluster and merges the results into
// the k items with the largest keys, largest first. query must return the
// cluster's own k largest (ORDER BY key DESC LIMIT k, filtered on
// c.Shards); key is usually the ID, which sorts by creation time (newest
// videos), or a created-at in Unix time. Ties keep the cluster order.
func Newest[T any](ctx context.Context, r *Router, k int, query func(ctx context.Context, c ClusterView, k int) ([]T, error), key func(T) int64) ([]T, error) {
	if k <= 0 {
		return nil, nil
	}
	var mu sync.Mutex
	var all []T
	err := r.FanOut(ctx, func(ctx context.Context, c ClusterView) error {
		items, err := query(ctx, c, k)
		if err != nil {
			return fmt.Errorf("shard: fan-out on %s: %w", c.Name, err)
		}
		mu.Lock()
		all = append(all, items...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortDesc(all, key)
	if len(all) > k {
		all = all[:k]
	}
	return all, nil
}

func sortDesc[T any](items []T, key func(T) int64) {
	slices.SortStableFunc(items, func(a, b T) int { return cmp.Compare(key(b), key(a)) })
}
