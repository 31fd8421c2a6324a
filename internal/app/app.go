// Package app is Blueprint's composition root: it turns a configuration
// into running roles. It opens the engines a process needs (SQLite, object
// storage, the embedded broker or a connection to one), builds the
// services on them, and starts the roles in dependency order — origin,
// edge, frontend servers, gateway with its load balancer, worker — and
// stops them in reverse, letting in-flight work finish.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/blueprint-media/blueprint/internal/abr"
	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/cache/redisl2"
	"github.com/blueprint-media/blueprint/internal/cache/tier"
	"github.com/blueprint-media/blueprint/internal/coldstore"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/dispatch"
	"github.com/blueprint-media/blueprint/internal/edge"
	"github.com/blueprint-media/blueprint/internal/frontend"
	"github.com/blueprint-media/blueprint/internal/gateway"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/lb"
	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/origin"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/ratelimit"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
	"github.com/blueprint-media/blueprint/internal/telemetry"
	"github.com/blueprint-media/blueprint/internal/upload"
	"github.com/blueprint-media/blueprint/internal/web"
	"github.com/blueprint-media/blueprint/internal/worker"
)

// ShutdownTimeout bounds how long Stop waits for in-flight work.
const ShutdownTimeout = 30 * time.Second

// App is one Blueprint process.
type App struct {
	cfg    config.Config
	logger *slog.Logger
	reg    *prometheus.Registry
	checks *telemetry.Checks

	db     *sqlstore.DB
	blobs  blob.Store
	broker *queue.Broker
	q      *queue.Queue
	media  *media.Service

	admin     *httpx.Server
	gatewaySv *httpx.Server
	originSv  *httpx.Server
	edgeSv    *httpx.Server
	frontends []*httpx.Server
	balancer  *lb.Balancer
	edge      *edge.Edge
	worker    *worker.Worker
	locker    lock.Locker
	etcd      *clientv3.Client
	adminMux  *http.ServeMux
	ids       *idgen.Generator  // nil unless this process runs the frontend role
	modules   []frontend.Module // product services mounted on every frontend
	bgCtx     context.Context   // ends when Stop begins; for background loops
	dispatch  *dispatch.Dispatcher

	shards      *shard.Router // database.shard_catalog: comments and likes on shard clusters
	shardStores []shardStore  // those clusters' primaries, for their outbox relays

	l2          *redisl2.Fleet
	invalidator *tier.NATS
	tiers       []tierStats

	stops  []func(context.Context) error // run in reverse order
	bg     sync.WaitGroup
	cancel context.CancelFunc
}

// URLs are where a running App's listeners are.
type URLs struct {
	Gateway, Admin, Edge, Origin, Broker string
	Frontends                            []string
}

// New returns an App for cfg; Start runs it.
func New(cfg config.Config, logger *slog.Logger) *App {
	return &App{cfg: cfg, logger: logger, reg: telemetry.NewRegistry(), checks: &telemetry.Checks{}}
}

// Registry returns the process's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// URLs returns the bound listener URLs (empty for roles not run here).
func (a *App) URLs() URLs {
	var u URLs
	for _, p := range []struct {
		s   *httpx.Server
		dst *string
	}{{a.gatewaySv, &u.Gateway}, {a.admin, &u.Admin}, {a.edgeSv, &u.Edge}, {a.originSv, &u.Origin}} {
		if p.s != nil {
			*p.dst = p.s.URL()
		}
	}
	for _, f := range a.frontends {
		u.Frontends = append(u.Frontends, f.URL())
	}
	if a.broker != nil {
		u.Broker = a.broker.ClientURL()
	}
	return u
}

func (a *App) onStop(f func(context.Context) error) { a.stops = append(a.stops, f) }

// Start starts every configured role. On error it stops what it started.
func (a *App) Start(ctx context.Context) error {
	if err := a.start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Stop(stopCtx)
		return err
	}
	a.checks.SetReady(true)
	a.logger.Info("blueprint ready", "roles", strings.Join(a.cfg.Roles, ","))
	return nil
}

func (a *App) start(ctx context.Context) error {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("app: data dir: %w", err)
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.bgCtx = bgCtx

	// The admin listener first, so /healthz answers during start-up.
	a.adminMux = telemetry.AdminHandler(a.reg, a.checks)
	a.statusHandlers(a.adminMux)
	admin, err := httpx.Listen("admin", cfg.AdminAddr, a.adminMux, a.logger)
	if err != nil {
		return err
	}
	a.admin = admin
	admin.Start(ctx)
	a.onStop(admin.Stop)

	has := cfg.HasRole
	needDB := has("gateway") || has("frontend") || has("worker")
	needBlob := has("frontend") || has("worker") || has("origin")
	needQueue := has("frontend") || has("worker")

	secret, err := a.secret()
	if err != nil {
		return err
	}
	if needDB {
		// database.url: empty (data_dir/blueprint.db), sqlite:PATH, or a
		// postgres:// / postgresql:// URL (never logged unredacted).
		// database.replicas: streaming replicas that web pages read from
		// once they have replayed the visitor's last write.
		db, err := sqlstore.OpenURLWith(ctx, cfg.Database.URL, filepath.Join(cfg.DataDir, "blueprint.db"),
			sqlstore.Options{Replicas: cfg.Database.Replicas, Logger: a.logger.With("component", "db"), Registerer: a.reg})
		if err != nil {
			return fmt.Errorf("app: database.url: %w", err)
		}
		a.logger.Info("database open", "engine", db.Dialect, "url", sqlstore.Redact(cfg.Database.URL), "replicas", len(cfg.Database.Replicas))
		a.db = db
		a.onStop(func(context.Context) error { return db.Close() })
		a.checks.Add("database", db.Ping)
		a.dbStatusHandlers(a.adminMux)
		// Pool use (open, in use, idle, waits) of the writer and reader pools.
		a.reg.MustRegister(collectors.NewDBStatsCollector(db.W, "writer"))
		if db.R != db.W {
			a.reg.MustRegister(collectors.NewDBStatsCollector(db.R, "reader"))
		}
		// Locks live in the same database, so processes sharing a data
		// directory share them; fencing tokens are checked in its fences table.
		if err := db.CreateSchema(ctx, lock.FenceSchema); err != nil {
			return fmt.Errorf("app: fences table: %w", err)
		}
		lockOpts := lock.Options{TTL: cfg.Lock.TTL, Metrics: lock.NewMetrics(a.reg)}
		if len(cfg.Lock.Etcd) > 0 {
			cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Lock.Etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return fmt.Errorf("app: lock.etcd: %w", err)
			}
			a.etcd = cli
			a.onStop(func(context.Context) error { return cli.Close() })
			a.locker = lock.NewEtcd(cli, "", lockOpts)
		} else if db.Dialect == sqlstore.Postgres {
			locker, err := lock.NewPostgres(ctx, cfg.Database.URL, lockOpts)
			if err != nil {
				return err
			}
			a.locker = locker
		} else {
			locker, err := lock.NewSQLite(ctx, db, lockOpts)
			if err != nil {
				return err
			}
			a.locker = locker
		}
		locker := a.locker
		a.onStop(func(context.Context) error { return locker.Close() })
	}
	if needBlob {
		dir := filepath.Join(cfg.DataDir, "objects")
		if cfg.Blob.URL != "" {
			d, ok := strings.CutPrefix(cfg.Blob.URL, "file://")
			if !ok {
				return fmt.Errorf("app: blob.url: only file://DIR is supported in this version")
			}
			dir = d
		}
		store, err := blob.NewDisk(dir)
		if err != nil {
			return err
		}
		a.blobs = store
	}
	if has("broker") {
		a.broker = queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(cfg.DataDir, "broker"), Addr: cfg.Broker.Addr}, a.logger)
		if err := a.broker.Start(ctx); err != nil {
			return err
		}
		a.onStop(a.broker.Stop)
	}
	if needQueue {
		q, err := queue.Connect(ctx, cfg.Queue.URL, a.broker, a.logger)
		if err != nil {
			return err
		}
		a.q = q
		a.onStop(func(context.Context) error { q.Close(); return nil })
		a.checks.Add("queue", func(ctx context.Context) error { _, err := q.Depth(ctx); return err })
		depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "queue", Name: "depth", Help: "Jobs waiting or in flight on the job stream.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			d, _ := q.Depth(ctx)
			return float64(d)
		})
		a.reg.MustRegister(depth)
	}

	// Origin and edge.
	if has("origin") {
		sv, err := httpx.Listen("origin", cfg.Origin.Addr, origin.Handler(a.blobs), a.logger)
		if err != nil {
			return err
		}
		a.originSv = sv
		sv.Start(ctx)
		a.onStop(sv.Stop)
	}
	if has("edge") {
		originURL := cfg.Edge.Origin
		if originURL == "" {
			if a.originSv == nil {
				return errors.New("app: edge.origin: the edge role needs an origin: run the origin role here or set edge.origin")
			}
			originURL = a.originSv.URL()
		}
		e, err := edge.New(edge.Config{
			Origin: originURL, CacheDir: filepath.Join(cfg.DataDir, "edge"),
			MemoryBytes: int64(cfg.Edge.MemoryBytes), DiskBytes: int64(cfg.Edge.DiskBytes), MaxObjectBytes: int64(cfg.Edge.MaxObjectBytes),
		}, a.logger.With("role", "edge"), a.reg)
		if err != nil {
			return err
		}
		a.edge = e
		if err := e.Start(ctx); err != nil {
			return err
		}
		a.onStop(e.Stop)
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
		mux.Handle("/", e)
		sv, err := httpx.Listen("edge", cfg.Edge.Addr, mux, a.logger)
		if err != nil {
			return err
		}
		a.edgeSv = sv
		sv.Start(ctx)
		a.onStop(sv.Stop)
	}

	// Services. Only processes that create rows (the frontend role) lease
	// a worker ID for the ID generator.
	var ids *idgen.Generator
	if has("frontend") {
		var leaser idgen.Leaser = idgen.NewFileLeaser(cfg.DataDir)
		if a.etcd != nil {
			el, err := idgen.NewEtcdLeaser(idgen.EtcdConfig{Client: a.etcd})
			if err != nil {
				return err
			}
			leaser = el
		}
		gen, err := idgen.New(idgen.Config{Leaser: leaser})
		if err != nil {
			return err
		}
		if err := gen.Register(a.reg); err != nil {
			return err
		}
		if err := gen.Start(ctx); err != nil {
			return err
		}
		ids = gen
		a.onStop(gen.Stop)
		a.adminMux.Handle("GET /ids", gen.Handler())
		a.checks.Add("idgen", func(context.Context) error {
			if gen.WorkerID() < 0 {
				return errors.New("no worker-id lease")
			}
			return nil
		})
	}
	var accounts *account.Service
	if a.db != nil {
		accounts = account.New(a.db, ids, account.Config{SessionTTL: cfg.Account.SessionTTL, MinPasswordLength: cfg.Account.MinPasswordLength})
		a.media = media.New(a.db, a.q, a.edgeURL()+origin.Prefix, a.logger)
		videos, err := newTier(ctx, a, "videos", a.media.Load)
		if err != nil {
			return err
		}
		a.media.CacheWith(videos)
		if has("gateway") && a.q != nil {
			// Sessions are cached only where logouts elsewhere reach this
			// process's L1 (through the broker).
			sessions, err := newTier(ctx, a, "sessions", accounts.LoadSession)
			if err != nil {
				return err
			}
			accounts.CacheSessionsWith(sessions)
		}
		if has("frontend") {
			views, err := tier.NewCounter(tier.CounterConfig{Flush: a.media.FlushViews, Flushed: a.media.ViewsFlushed, FlushInterval: a.cfg.Cache.ViewFlush})
			if err != nil {
				return err
			}
			if err := views.Start(ctx); err != nil {
				return err
			}
			a.onStop(views.Stop)
			a.media.CountViewsWith(views)
		}
	}

	// The worker starts before the frontends and the gateway so that it
	// stops after them: on shutdown the public listeners drain first and
	// the worker gets the rest of the budget to finish its job.
	if has("worker") {
		w := worker.New(worker.Config{
			Concurrency: cfg.Worker.Concurrency, AckWait: cfg.Queue.AckWait, MaxDeliver: cfg.Queue.MaxDeliver,
			ScratchDir:     filepath.Join(cfg.DataDir, "work"),
			Tools:          abr.Tools{FFmpeg: cfg.Worker.FFmpeg, FFprobe: cfg.Worker.FFprobe},
			Limits:         abr.Limits{MaxPixels: cfg.Worker.MaxPixels},
			SegmentSeconds: cfg.Worker.SegmentSeconds, Preset: cfg.Worker.Preset, Threads: cfg.Worker.FFmpegThreads,
			LockWait: 6 * cfg.Lock.TTL,
		}, a.q, a.blobs, a.media, a.locker, a.logger.With("role", "worker"), a.reg)
		if err := w.Start(ctx); err != nil {
			return err
		}
		a.worker = w
		a.onStop(w.Stop)
	}

	// Product services on the events (each in its own file of this
	// package); they mount their routes on the frontends as modules.
	if has("frontend") {
		a.ids = ids
		if cfg.Database.ShardCatalog != "" {
			if a.shards, a.shardStores, err = a.startShards(ctx); err != nil {
				return err
			}
		}
		if err := a.newDispatcher(); err != nil {
			return err
		}
		for _, start := range []func(context.Context) error{a.startSocial, a.startNotify, a.startSearch, a.startPayment, a.startAnalytics} {
			if err := start(ctx); err != nil {
				return err
			}
		}
		if err := a.startDispatcher(ctx); err != nil {
			return err
		}
	}

	// Frontend servers.
	if has("frontend") {
		uploads, err := upload.New(upload.Config{Dir: filepath.Join(cfg.DataDir, "uploads"), MaxBytes: int64(cfg.Upload.MaxBytes)},
			a.db, a.blobs, a.media, ids, a.logger, a.reg)
		if err != nil {
			return err
		}
		pages, err := web.NewPages()
		if err != nil {
			return err
		}
		deps := frontend.Deps{
			Accounts: accounts, Media: a.media, Uploads: uploads, Pages: pages, Secret: secret,
			SecureCookie: strings.HasPrefix(cfg.PublicURL, "https://"), SessionTTL: cfg.Account.SessionTTL,
			MaxBodyBytes: int64(cfg.Gateway.MaxBodyBytes), MaxUpload: int64(cfg.Upload.MaxBytes),
			Logger: a.logger, Requests: frontend.NewRequestsMetric(a.reg), Modules: a.modules,
			AdmitUpload: a.admitUpload(), ReadYourWrites: a.db.ReadYourWrites,
		}
		for i := range cfg.Frontend.Instances {
			name := fmt.Sprintf("frontend-%d", i+1)
			fe, err := frontend.New(name, deps)
			if err != nil {
				return err
			}
			sv, err := httpx.Listen(name, cfg.Frontend.Addr, fe.Handler(), a.logger)
			if err != nil {
				return err
			}
			a.frontends = append(a.frontends, sv)
			sv.Start(ctx)
			a.onStop(sv.Stop)
		}
		// Maintenance jobs run in one process at a time: whichever holds
		// the "singleton/maintenance" lock (leader election); another
		// process takes over when it stops or its lease expires.
		relay := outbox.NewRelay(a.db, a.q, a.logger.With("component", "outbox"), a.reg)
		var mover *coldstore.Mover // idle media to cold storage
		if idle := cfg.ColdStore.IdleAfter; idle > 0 {
			mover = coldstore.New(a.db, a.blobs, coldstore.Config{IdleAfter: idle}, a.logger.With("component", "coldstore"), a.reg)
		}
		runArchive, err := a.startArchive(cfg.Archive) // old partitions of events and notifications to Parquet
		if err != nil {
			return err
		}
		elector := &lock.Elector{Locker: a.locker, Name: "singleton/maintenance"}
		a.bg.Go(func() {
			elector.Run(bgCtx, func(ctx context.Context, lease *lock.Lease) {
				a.logger.Info("leading the maintenance jobs", "token", lease.Token)
				var jobs sync.WaitGroup
				jobs.Go(func() {
					every(ctx, a.logger, "reconcile", 5*time.Second, func(ctx context.Context) error {
						n, errUploads := uploads.Reconcile(ctx)
						if n > 0 {
							a.logger.Info("finished uploads whose finish was interrupted", "count", n)
						}
						n, errJobs := a.media.Reconcile(ctx)
						if n > 0 {
							a.logger.Info("re-published jobs", "count", n)
						}
						return errors.Join(errUploads, errJobs)
					})
				})
				// The outbox relay publishes the events services write in
				// their transactions.
				jobs.Go(func() { relay.Run(ctx) })
				for _, r := range a.shardRelays() { // comments' events on the shard clusters
					jobs.Go(func() { r.Run(ctx) })
				}
				if mover != nil {
					jobs.Go(func() {
						every(ctx, a.logger, "coldstore", a.cfg.ColdStore.Interval, func(ctx context.Context) error {
							_, err := mover.RunOnce(ctx)
							return err
						})
					})
				}
				if runArchive != nil {
					jobs.Go(func() { runArchive(ctx) })
				}
				jobs.Go(func() {
					// The inbox only has to remember events that can
					// still be delivered (outbox.InboxRetention).
					every(ctx, a.logger, "inbox-prune", time.Hour, func(ctx context.Context) error {
						n, err := outbox.PruneInbox(ctx, a.db, time.Now().Add(-outbox.InboxRetention), 0)
						if n > 0 {
							a.logger.Info("pruned the event inbox", "rows", n)
						}
						return err
					})
				})
				jobs.Go(func() {
					every(ctx, a.logger, "upload-sweep", 10*time.Minute, func(ctx context.Context) error {
						if _, err := accounts.DeleteExpiredSessions(ctx); err != nil {
							return err
						}
						_, err := uploads.Sweep(ctx, 10*time.Minute)
						return err
					})
				})
				jobs.Wait()
			})
		})
	}

	// Gateway and load balancer.
	if has("gateway") {
		backends := cfg.LB.Backends
		if len(backends) == 0 {
			for _, f := range a.frontends {
				backends = append(backends, f.URL())
			}
		}
		if len(backends) == 0 {
			return errors.New("app: lb.backends: the gateway needs frontend servers: run the frontend role here or set lb.backends")
		}
		bal, err := lb.New(lb.Config{Strategy: cfg.LB.Strategy, HealthInterval: cfg.LB.HealthInterval}, backends, a.logger.With("role", "lb"), a.reg)
		if err != nil {
			return err
		}
		if err := bal.Start(ctx); err != nil {
			return err
		}
		a.balancer = bal
		a.onStop(bal.Stop)
		limiter, err := ratelimit.New(ratelimit.Config{Rate: cfg.Gateway.RateLimit, Burst: cfg.Gateway.RateBurst})
		if err != nil {
			return err
		}
		gw := gateway.New(gateway.Config{
			MaxBodyBytes: int64(cfg.Gateway.MaxBodyBytes), MaxUploadBytes: int64(cfg.Upload.MaxBytes) + 1<<20,
			TrustedProxy: cfg.Gateway.TrustedProxy, Secret: secret,
		}, accounts, bal, limiter, a.logger.With("role", "gateway"), a.reg)
		sv, err := httpx.Listen("gateway", cfg.HTTPAddr, gw.Handler(), a.logger)
		if err != nil {
			return err
		}
		a.gatewaySv = sv
		sv.Start(ctx)
		a.onStop(sv.Stop)
	}

	// DNS last: its dynamic records point at the gateways and edges above.
	return a.startDNS(ctx)
}

// edgeURL is the public URL of the CDN edge that media URLs point at:
// edge.public_url, else this process's edge listener, else the port of
// edge.addr on localhost. The edge listener is bound before the media
// service needs the URL, so a port-0 edge gets its real port.
func (a *App) edgeURL() string {
	u := a.cfg.Edge.PublicURL
	if u == "" && a.edgeSv != nil {
		u = a.edgeSv.URL()
	}
	if u == "" {
		_, port, _ := net.SplitHostPort(a.cfg.Edge.Addr)
		u = "http://localhost:" + port
	}
	return strings.TrimSuffix(u, "/")
}

// every runs f every period until ctx ends.
func every(ctx context.Context, logger *slog.Logger, name string, period time.Duration, f func(context.Context) error) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("background task failed", "task", name, "err", err)
			}
		}
	}
}

// Stop stops the roles in reverse start order. In-flight requests and jobs
// get until ctx ends to finish.
func (a *App) Stop(ctx context.Context) error {
	a.checks.SetReady(false)
	if a.cancel != nil {
		a.cancel()
	}
	a.bg.Wait()
	var errs []error
	for i := len(a.stops) - 1; i >= 0; i-- {
		if err := a.stops[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.stops = nil
	return errors.Join(errs...)
}

// secret returns the configured secret, or one generated once and kept in
// the data directory (mode 0600). Processes sharing a data directory share
// it; a file that exists but is too short is an error, never a weak key.
func (a *App) secret() ([]byte, error) {
	if a.cfg.Secret != "" {
		if len(a.cfg.Secret) < 16 {
			return nil, errors.New("app: secret: at least 16 characters")
		}
		return []byte(a.cfg.Secret), nil
	}
	path := filepath.Join(a.cfg.DataDir, "secret")
	read := func() ([]byte, error) {
		// Another process may be writing it right now: give it a moment.
		for range 50 {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("app: secret: %w", err)
			}
			if len(b) >= 32 {
				return b, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil, fmt.Errorf("app: secret: %s is shorter than 32 bytes; delete it to generate a new one", path)
	}
	if _, err := os.Stat(path); err == nil {
		return read()
	}
	buf := make([]byte, 32)
	rand.Read(buf)
	s := []byte(hex.EncodeToString(buf))
	tmp, err := os.CreateTemp(a.cfg.DataDir, ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("app: secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(s); err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	// Link, not rename: if another process created the file first, ours
	// loses and both use theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return read()
		}
		return nil, fmt.Errorf("app: secret: %w", err)
	}
	return s, nil
}
