package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Strategy names accepted in Config.Strategy.
const (
	RoundRobin     = "round_robin"
	LeastConn      = "least_conn"
	ConsistentHash = "consistent_hash"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultHealthPath     = "/healthz"
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = time.Second
	DefaultUnhealthyAfter = 2
	DefaultHealthyAfter   = 1
	DefaultVirtualNodes   = 100
)

// ErrNoBackend is returned by Pick when no healthy backend is left to choose.
var ErrNoBackend = errors.New("lb: no healthy backend")

// Config configures a Balancer. Zero fields take the defaults above.
type Config struct {
	Strategy       string        // one of RoundRobin, LeastConn, ConsistentHash; default RoundRobin
	HealthPath     string        // path of the health check, joined to each backend URL; default "/healthz"
	HealthInterval time.Duration // time between health-check rounds; default 1s
	HealthTimeout  time.Duration // limit for one health check; default 1s
	UnhealthyAfter int           // consecutive failed checks before a backend is marked down; default 2
	HealthyAfter   int           // consecutive good checks before it comes back; default 1
	VirtualNodes   int           // points per backend on the hash ring; default 100
}

// Backend is one upstream server. Its URL is the base URL the Balancer was
// given; the rest of its state is owned by the Balancer.
type Backend struct {
	URL *url.URL

	name string // host:port, used in logs and metric labels

	up       atomic.Bool  // read on every pick; written under Balancer.mu
	inflight atomic.Int64 // requests picked and not yet done
	picks    atomic.Uint64

	// Health-check state, guarded by Balancer.mu.
	checked    bool // false until the first health check has finished
	okStreak   int
	failStreak int
	lastCheck  time.Time
	lastErr    string

	m backendMetrics
}

// String returns the backend's host:port.
func (be *Backend) String() string { return be.name }

// Status is a snapshot of one backend, for an admin page.
type Status struct {
	Name      string    // host:port
	URL       string    // base URL
	Healthy   bool      // whether Pick may choose it
	InFlight  int64     // requests picked and not yet done
	Picks     uint64    // times picked since New
	LastCheck time.Time // end of the last health check; zero before the first
	LastError string    // why the last check (or proxied connection) failed; empty if it passed
}

// Balancer picks healthy backends for requests. It is safe for concurrent
// use.
type Balancer struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	backends []*Backend // fixed at New, in the order given
	strategy strategy

	// healthy is the list of backends that are up, in configuration order. It
	// is replaced (never modified) under mu whenever a backend changes state,
	// so Pick reads it without locking.
	healthy atomic.Pointer[[]*Backend]

	mu sync.Mutex // guards the health-check state of every Backend

	checkClient *http.Client    // for health checks
	transport   *http.Transport // for proxied requests

	lifecycle sync.Mutex // serializes Start and Stop; guards the fields below
	started   bool
	stop      context.CancelFunc // stops the checker goroutine
	done      chan struct{}      // closed when the checker goroutine has exited
}

// New validates cfg and backends and returns a Balancer. Backends are base
// URLs such as "http://127.0.0.1:41234"; they are assumed healthy until the
// first health check, which Start runs. reg may be nil, in which case metrics
// are kept but not registered. New starts no goroutine.
func New(cfg Config, backends []string, logger *slog.Logger, reg prometheus.Registerer) (*Balancer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(backends) == 0 {
		return nil, errors.New("lb: no backends configured")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	m := newMetrics()
	b := &Balancer{cfg: cfg, log: logger, metrics: m}
	seen := make(map[string]bool, len(backends))
	for _, raw := range backends {
		u, err := parseBackendURL(raw)
		if err != nil {
			return nil, err
		}
		if seen[u.Host] {
			return nil, fmt.Errorf("lb: backend %q listed twice", u.Host)
		}
		seen[u.Host] = true
		be := &Backend{URL: u, name: u.Host, m: m.forBackend(u.Host)}
		be.up.Store(true)
		be.m.up.Set(1)
		b.backends = append(b.backends, be)
	}
	b.publishHealthy()

	switch cfg.Strategy {
	case RoundRobin:
		b.strategy = &roundRobin{}
	case LeastConn:
		b.strategy = &leastConn{}
	case ConsistentHash:
		b.strategy = newConsistentHash(b.backends, cfg.VirtualNodes)
	}

	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, fmt.Errorf("lb: register metrics: %w", err)
		}
	}

	b.checkClient = &http.Client{
		Transport: &http.Transport{
			// A new connection per check also proves the backend still
			// accepts connections, not just that an old one is alive.
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: cfg.HealthTimeout}).DialContext,
		},
		// Health checks must not follow a redirect to somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	b.transport = newProxyTransport()
	return b, nil
}

// withDefaults fills zero fields and rejects invalid ones.
func (c Config) withDefaults() (Config, error) {
	switch c.Strategy {
	case "":
		c.Strategy = RoundRobin
	case RoundRobin, LeastConn, ConsistentHash:
	default:
		return c, fmt.Errorf("lb: unknown strategy %q (want %s, %s or %s)", c.Strategy, RoundRobin, LeastConn, ConsistentHash)
	}
	if c.HealthPath == "" {
		c.HealthPath = DefaultHealthPath
	}
	if !strings.HasPrefix(c.HealthPath, "/") {
		return c, fmt.Errorf("lb: health path %q must start with /", c.HealthPath)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"health interval", &c.HealthInterval, DefaultHealthInterval},
		{"health timeout", &c.HealthTimeout, DefaultHealthTimeout},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return c, fmt.Errorf("lb: %s must not be negative, got %v", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	counts := []struct {
		name string
		v    *int
		def  int
	}{
		{"unhealthy after", &c.UnhealthyAfter, DefaultUnhealthyAfter},
		{"healthy after", &c.HealthyAfter, DefaultHealthyAfter},
		{"virtual nodes", &c.VirtualNodes, DefaultVirtualNodes},
	}
	for _, n := range counts {
		if *n.v < 0 {
			return c, fmt.Errorf("lb: %s must not be negative, got %d", n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	return c, nil
}

// parseBackendURL accepts an absolute http or https URL with a host.
func parseBackendURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("lb: backend %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("lb: backend %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("lb: backend %q: missing host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("lb: backend %q: must not have a query, fragment or user info", raw)
	}
	return u, nil
}

// Start runs one round of health checks and waits for it, so the first
// requests see real backend state, then starts checking every HealthInterval
// in the background until Stop. ctx bounds the first round only; the
// background checker keeps ctx's values but not its cancellation. A Balancer
// can be started once.
func (b *Balancer) Start(ctx context.Context) error {
	b.lifecycle.Lock()
	defer b.lifecycle.Unlock()
	if b.started {
		return errors.New("lb: already started")
	}
	b.started = true

	b.checkAll(ctx)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lb: start: %w", err)
	}

	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.stop, b.done = cancel, make(chan struct{})
	go b.checkLoop(loopCtx, b.done)
	return nil
}

// Stop stops the health checker and waits for it to exit, or for ctx to end.
// It closes idle connections to the backends. Requests still being proxied
// are not interrupted; the HTTP server that serves Proxy drains them. Stop is
// safe to call more than once and without Start.
func (b *Balancer) Stop(ctx context.Context) error {
	b.lifecycle.Lock()
	stop, done := b.stop, b.done
	b.stop = nil
	b.lifecycle.Unlock()

	if stop != nil {
		stop()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("lb: stop: %w", ctx.Err())
		}
	}
	b.transport.CloseIdleConnections()
	b.checkClient.CloseIdleConnections()
	return nil
}

// Pick chooses a healthy backend for a request. key is used by
// ConsistentHash (the gateway passes the user ID or client IP); an empty key
// falls back to round robin. The other strategies ignore key. Backends in
// exclude are skipped, so a retry can avoid a backend that just failed.
//
// The returned done func must be called exactly once when the request
// finishes; it keeps the in-flight counts that LeastConn relies on. Calling it
// more than once has no further effect. When no backend is available, Pick
// returns ErrNoBackend and a done func that does nothing.
func (b *Balancer) Pick(key string, exclude ...*Backend) (*Backend, func(), error) {
	healthy := *b.healthy.Load()
	var be *Backend
	if len(healthy) > 0 {
		be = b.strategy.pick(key, healthy, exclude)
	}
	if be == nil {
		b.metrics.noBackend.Inc()
		return nil, func() {}, ErrNoBackend
	}

	be.picks.Add(1)
	be.m.picks.Inc()
	be.inflight.Add(1)
	be.m.inflight.Inc()
	var finished atomic.Bool
	done := func() {
		if finished.CompareAndSwap(false, true) {
			be.inflight.Add(-1)
			be.m.inflight.Dec()
		}
	}
	return be, done, nil
}

// Backends returns the state of every backend, in configuration order.
func (b *Balancer) Backends() []Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Status, 0, len(b.backends))
	for _, be := range b.backends {
		out = append(out, Status{
			Name:      be.name,
			URL:       be.URL.String(),
			Healthy:   be.up.Load(),
			InFlight:  be.inflight.Load(),
			Picks:     be.picks.Load(),
			LastCheck: be.lastCheck,
			LastError: be.lastErr,
		})
	}
	return out
}

// setUp changes be's state, logs and counts the transition, and republishes
// the healthy list. It does nothing if be is already in that state. b.mu must
// be held.
func (b *Balancer) setUp(be *Backend, up bool, reason string) {
	if be.up.Load() == up {
		return
	}
	be.up.Store(up)
	if up {
		be.m.up.Set(1)
		be.m.toUp.Inc()
		b.log.Info("lb: backend up", "backend", be.name)
	} else {
		be.m.up.Set(0)
		be.m.toDown.Inc()
		b.log.Warn("lb: backend down", "backend", be.name, "reason", reason)
	}
	b.publishHealthy()
}

// publishHealthy replaces the healthy list from the backends' current state.
// b.mu must be held (or b not yet shared).
func (b *Balancer) publishHealthy() {
	healthy := make([]*Backend, 0, len(b.backends))
	for _, be := range b.backends {
		if be.up.Load() {
			healthy = append(healthy, be)
		}
	}
	b.healthy.Store(&healthy)
}

// markFailed marks be down at once because a connection to it failed while
// proxying. It takes HealthyAfter good health checks to bring it back.
func (b *Balancer) markFailed(be *Backend, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	be.okStreak = 0
	be.failStreak = max(be.failStreak, b.cfg.UnhealthyAfter)
	be.lastErr = "proxy: " + err.Error()
	b.setUp(be, false, be.lastErr)
}

// excluded reports whether be is in exclude.
func excluded(be *Backend, exclude []*Backend) bool {
	return len(exclude) > 0 && slices.Contains(exclude, be)
}
