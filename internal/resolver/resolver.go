// Package resolver is Blueprint's caching iterative DNS resolver, the
// "ISP resolver" of the local hierarchy: it walks from the root hints down
// to the authoritative servers, caches answers with their TTLs, caches
// negative answers (RFC 2308), minimises query names (RFC 9156) and serves
// stale data only after a failed refresh (RFC 8767). See README.md.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/cache"
)

// Resolver is a caching iterative resolver serving clients over UDP and
// TCP. Create it with New, then Start and Stop it; Resolve answers
// in-process without a socket.
type Resolver struct {
	cfg     Config
	logger  *slog.Logger
	reg     prometheus.Registerer
	met     *metrics
	answers *cache.Cache[key, *answer]
	delegs  *cache.Cache[string, *delegation]
	servers servers
	root    *delegation
	ports   map[netip.Addr]int

	outstanding chan struct{} // upstream query slots
	jobs        chan job      // cache misses for idle workers
	workers     atomic.Int64  // workers running

	flightMu sync.Mutex
	flights  map[key]*flight

	// Set by Start, cleared by Stop.
	mu      sync.Mutex
	udp     *net.UDPConn
	tcp     *net.TCPListener
	baseCtx context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	conns   map[net.Conn]struct{}

	registered []prometheus.Collector
}

// flight is one resolution shared by concurrent identical queries.
type flight struct {
	done chan struct{}
	a    *answer
	err  error
}

// New returns a Resolver for cfg whose metrics go to reg (which may be
// nil). It starts nothing and registers nothing: Start registers the
// metrics and Stop unregisters them, so that a failed Start can be retried
// with a new Resolver on the same registry.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Resolver, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{
		cfg:         cfg,
		logger:      logger.With("component", "resolver"),
		reg:         reg,
		met:         newMetrics(),
		servers:     servers{m: make(map[netip.AddrPort]*serverInfo), max: 16384},
		ports:       make(map[netip.Addr]int),
		outstanding: make(chan struct{}, cfg.MaxOutstanding),
		jobs:        make(chan job),
		flights:     make(map[key]*flight),
		root:        &delegation{zone: "."},
	}
	for _, h := range cfg.RootHints {
		ap, _ := parseServerAddr(h, 53) // validated
		r.root.servers = append(r.root.servers, ap)
	}
	for ip, p := range cfg.ServerPorts {
		a, _ := netip.ParseAddr(ip)
		r.ports[a.Unmap()] = p
	}
	var err error
	if r.answers, err = newAnswerCache(cfg); err != nil {
		return nil, fmt.Errorf("resolver: answer cache: %w", err)
	}
	if r.delegs, err = newDelegationCache(cfg); err != nil {
		return nil, fmt.Errorf("resolver: delegation cache: %w", err)
	}
	return r, nil
}

// now returns the current time in Unix nanoseconds.
func (r *Resolver) now() int64 { return r.cfg.Now().UnixNano() }

// Start listens on cfg.Addr (UDP and TCP, the same port) and serves
// clients until Stop.
func (r *Resolver) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.udp != nil {
		return errors.New("resolver: already started")
	}
	udp, tcp, err := listen(ctx, r.cfg.Addr)
	if err != nil {
		return err
	}
	if err := r.register(); err != nil {
		udp.Close()
		tcp.Close()
		return err
	}
	r.udp, r.tcp = udp, tcp
	r.baseCtx, r.cancel = context.WithCancel(context.Background())
	r.conns = make(map[net.Conn]struct{})
	if err := errors.Join(r.answers.Start(r.baseCtx), r.delegs.Start(r.baseCtx)); err != nil {
		r.closeLocked()
		r.unregister()
		stopCtx := context.WithoutCancel(ctx)
		r.answers.Stop(stopCtx)
		r.delegs.Stop(stopCtx)
		return fmt.Errorf("resolver: %w", err)
	}
	readers := r.cfg.Readers
	if readers == 0 {
		readers = max(1, min(runtimeProcs(), 8))
	}
	for range readers {
		r.wg.Go(func() { r.serveUDP(udp) })
	}
	r.wg.Go(func() { r.serveTCP(tcp) })
	r.logger.Info("resolver listening", "addr", udp.LocalAddr().String(), "root_hints", r.cfg.RootHints)
	return nil
}

// listen opens the UDP socket and a TCP listener on the same port; with
// port 0 it retries until both get the same free port.
func listen(ctx context.Context, addr string) (*net.UDPConn, *net.TCPListener, error) {
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("resolver: listen udp %s: %w", addr, err)
		}
		udp := pc.(*net.UDPConn)
		taddr := udp.LocalAddr().String()
		ln, err := lc.Listen(ctx, "tcp", taddr)
		if err == nil {
			return udp, ln.(*net.TCPListener), nil
		}
		udp.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" || attempt >= 20 {
			return nil, nil, fmt.Errorf("resolver: listen tcp %s: %w", taddr, err)
		}
	}
}

// Addr returns the address the resolver listens on (UDP and TCP), or ""
// before Start.
func (r *Resolver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.udp == nil {
		return ""
	}
	return r.udp.LocalAddr().String()
}

// Stop closes the sockets, cancels the resolutions in progress and waits
// for the serving goroutines until ctx ends.
func (r *Resolver) Stop(ctx context.Context) error {
	r.mu.Lock()
	if r.udp == nil {
		r.mu.Unlock()
		return nil
	}
	r.closeLocked()
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("resolver: stop: %w", ctx.Err())
	}
	stopCtx := context.WithoutCancel(ctx)
	err = errors.Join(err, r.answers.Stop(stopCtx), r.delegs.Stop(stopCtx))
	r.unregister()
	return err
}

// collectors are the resolver's metrics with those of its two caches.
func (r *Resolver) collectors() []prometheus.Collector {
	return append(r.met.collectors(), r.answers.Collector("resolver_answers"), r.delegs.Collector("resolver_delegations"))
}

// register registers the metrics on cfg's registry; on error it leaves
// none registered.
func (r *Resolver) register() error {
	if r.reg == nil {
		return nil
	}
	cs := r.collectors()
	for i, c := range cs {
		if err := r.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.reg.Unregister(done)
			}
			return fmt.Errorf("resolver: register metrics: %w", err)
		}
	}
	r.registered = cs
	return nil
}

// unregister removes the metrics registered by Start.
func (r *Resolver) unregister() {
	for _, c := range r.registered {
		r.reg.Unregister(c)
	}
	r.registered = nil
}

// closeLocked closes the sockets and connections and cancels the base
// context; r.mu is held.
func (r *Resolver) closeLocked() {
	if r.cancel != nil {
		r.cancel()
	}
	r.udp.Close()
	r.tcp.Close()
	for c := range r.conns {
		c.Close()
	}
	r.udp, r.tcp = nil, nil
}

// result is how a client query was answered, for the metrics.
type result string

const (
	resHit   result = "hit"
	resMiss  result = "miss"
	resStale result = "stale"
	resNone  result = "none" // an error reply, no cache involved
)

// cached returns the answer for a client question if the cache can give
// it now: fresh, or stale within its failure recheck window.
func (r *Resolver) cached(name string, qtype uint16, now int64) (*answer, result) {
	a := r.lookupAt(name, qtype, now)
	if a == nil {
		return nil, resMiss
	}
	if a.fresh(now) {
		if a.rcode == dns.RcodeServerFailure {
			return a, resNone // a remembered failure (RFC 9520)
		}
		return a, resHit
	}
	if a.rcode != dns.RcodeServerFailure && r.cfg.StaleWindow > 0 && now < a.retryAfter.Load() {
		return a, resStale
	}
	return nil, resMiss
}

// resolveClient answers a client question that the cache could not: it
// resolves (sharing the work with identical queries in flight) and falls
// back to the stale answer, if any, when the refresh fails.
func (r *Resolver) resolveClient(ctx context.Context, name string, qtype uint16, inline bool) (*answer, result, error) {
	k := key{name: name, qtype: qtype}
	stale := r.lookup(name, qtype)
	if stale != nil && stale.rcode == dns.RcodeServerFailure {
		stale = nil
	}
	a, err := r.shared(ctx, k, inline)
	if err == nil && a.rcode != dns.RcodeServerFailure {
		return a, resMiss, nil
	}
	now := r.now()
	if stale != nil && r.cfg.StaleWindow > 0 && now < stale.expires+int64(r.cfg.StaleWindow) {
		stale.retryAfter.Store(now + int64(r.cfg.StaleRecheck))
		return stale, resStale, nil
	}
	if err == nil {
		err = errors.New("resolver: resolution failed")
	}
	return r.servfail(name, qtype), resMiss, err
}

// servfail returns a SERVFAIL answer.
func (r *Resolver) servfail(name string, qtype uint16) *answer {
	now := r.now()
	return &answer{qname: name, qtype: qtype, rcode: dns.RcodeServerFailure, stored: now, expires: now}
}

// shared runs one resolution of k for all concurrent callers. The
// resolution runs on the resolver's own context with ResolveTimeout, so a
// caller that gives up does not cancel it for the others. With inline set
// the first caller resolves on its own goroutine (the server's workers
// do); otherwise on a new one, so that ctx bounds its wait too.
func (r *Resolver) shared(ctx context.Context, k key, inline bool) (*answer, error) {
	r.flightMu.Lock()
	f, ok := r.flights[k]
	if ok {
		r.flightMu.Unlock()
		select {
		case <-f.done:
			return f.a, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f = &flight{done: make(chan struct{})}
	r.flights[k] = f
	r.flightMu.Unlock()
	run := func() {
		rctx, cancel := context.WithTimeout(r.base(), r.cfg.ResolveTimeout)
		defer cancel()
		f.a, f.err = r.resolveFull(rctx, newReqState(), k.name, k.qtype)
		if f.err != nil {
			r.logger.Debug("resolution failed", "name", k.name, "qtype", dns.TypeToString[k.qtype], "err", f.err)
			// Remember the failure briefly (RFC 9520 section 3.2).
			if r.cfg.FailureTTL > 0 && r.lookup(k.name, k.qtype) == nil {
				sf := r.servfail(k.name, k.qtype)
				sf.expires = sf.stored + int64(r.cfg.FailureTTL)
				r.store(k, sf)
			}
		}
		r.flightMu.Lock()
		delete(r.flights, k)
		r.flightMu.Unlock()
		close(f.done)
	}
	if inline {
		run()
		return f.a, f.err
	}
	go run()
	select {
	case <-f.done:
		return f.a, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// base returns the context resolutions run on: the one of Start, or a
// background context when the resolver is used in-process only.
func (r *Resolver) base() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.baseCtx != nil {
		return r.baseCtx
	}
	return context.Background()
}

// Resolve answers the question (name, qtype) in class IN as the resolver
// would answer a client with recursion desired, using and filling the
// cache. The reply has the response code set; on SERVFAIL the error says
// why the resolution failed.
func (r *Resolver) Resolve(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("resolver: %q is not a domain name", name)
	}
	cname := canonical(name)
	now := r.now()
	a, res := r.cached(cname, qtype, now)
	var err error
	if a == nil {
		a, res, err = r.resolveClient(ctx, cname, qtype, false)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Response, m.RecursionAvailable, m.RecursionDesired = true, true, true
	m.Rcode = a.rcode
	age := uint32(max(0, (now-a.stored)/int64(time.Second)))
	ttl := func(t uint32) uint32 {
		if res == resStale {
			return uint32(r.cfg.StaleTTL / time.Second)
		}
		return t - min(t, age)
	}
	for _, rr := range a.answer {
		c := dns.Copy(rr)
		c.Header().Ttl = ttl(c.Header().Ttl)
		m.Answer = append(m.Answer, c)
	}
	for _, rr := range a.ns {
		c := dns.Copy(rr)
		c.Header().Ttl = ttl(c.Header().Ttl)
		m.Ns = append(m.Ns, c)
	}
	if err == nil && a.rcode == dns.RcodeServerFailure {
		err = errors.New("resolver: resolution failed recently (cached failure)")
	}
	return m, err
}
