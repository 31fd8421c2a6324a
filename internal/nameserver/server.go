package nameserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one authoritative server instance. Root and TLD
// servers are instances too, whose zones hold delegations.
type Config struct {
	// Name identifies the instance in logs and metrics ("root", "tld",
	// "auth"); default "auth".
	Name string
	// Addr is the host:port served on UDP and TCP. Port 0 picks a free
	// port (the same for UDP and TCP); Addr() returns it.
	Addr string
	// Zones are the zones served.
	Zones []ZoneConfig
	// ZoneDir, if set, is a directory of zone files named ORIGIN.zone
	// (e.g. "example.test.zone"). A file whose origin is one of Zones adds
	// to that zone; any other file is a zone of its own. Reload rescans it.
	ZoneDir string
	// ReloadInterval is how often zone files are checked for changes
	// (modification time or size); 0 turns polling off (Reload still works).
	ReloadInterval time.Duration
	// Regions maps client subnets to regions for PolicyGeo pools.
	Regions *RegionMap
	// Health tunes the health checks of pool targets.
	Health HealthConfig
	// RRL limits responses per client network against reflection attacks.
	RRL RRLConfig
	// TransferAllow lists the networks that may AXFR/IXFR (default:
	// loopback only). The addresses in Notify are always allowed.
	TransferAllow []netip.Prefix
	// Notify lists secondaries (host:port) sent a NOTIFY when a zone's
	// serial changes.
	Notify []string
	// MaxUDPSize is the largest UDP response (EDNS buffer size advertised
	// and honoured); default 1232 (the DNS flag day 2020 value).
	MaxUDPSize int
	// UDPWorkers is the number of goroutines reading the UDP socket
	// (default GOMAXPROCS).
	UDPWorkers int
	// MaxTCPConns bounds concurrent TCP connections (default 256).
	MaxTCPConns int
}

// ZoneConfig is one zone: generated text and/or files, plus dynamic pools.
type ZoneConfig struct {
	Origin string       // e.g. "blueprint.test."
	Text   string       // zone text parsed first (may be empty if Files hold the SOA)
	Files  []string     // zone files parsed after Text, re-read by Reload
	Pools  []PoolConfig // dynamic names
}

// Server is an authoritative DNS server: New, Start, Stop.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	checker *checker
	rrl     *rrl
	maxUDP  int
	qc      *queryCounters
	latUDP  prometheus.Observer
	latTCP  prometheus.Observer

	zones atomic.Pointer[zoneSet]

	mu      sync.Mutex            // serializes zone changes (reload, health)
	states  map[string]*zoneState // by origin; guarded by mu
	dirSeen string                // ZoneDir listing at the last reload; guarded by mu

	udp    *net.UDPConn
	tcp    net.Listener
	tcpSrv *dns.Server
	addr   string
	udpWG  *sync.WaitGroup
	cancel context.CancelFunc
	wg     sync.WaitGroup
	notify chan string // origins whose serial changed
}

// zoneSet is what queries read: the served zones by origin.
type zoneSet struct {
	byOrigin map[string]*zoneState
}

// zoneState is one origin across versions.
type zoneState struct {
	origin string
	cfg    ZoneConfig // Files include those found in ZoneDir
	zone   atomic.Pointer[Zone]
	soa    atomic.Pointer[soaPair]
	pools  []*Pool

	// Guarded by Server.mu.
	content map[string]dns.RR // transfer content (without SOA) at the current serial
	journal []delta
	stamps  map[string]fileStamp
}

type soaPair struct {
	soa *dns.SOA // served SOA, current serial
	neg *dns.SOA // the same with TTL min(TTL, MINIMUM) for negative answers
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// New returns a server for cfg. It loads the zones (an error in any zone
// is returned) but opens no socket and starts nothing: see Start.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "auth"
	}
	if cfg.Addr == "" {
		return nil, errors.New("nameserver: config: empty Addr")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("nameserver: config: addr %q: %w", cfg.Addr, err)
	}
	if cfg.MaxUDPSize <= 0 {
		cfg.MaxUDPSize = 1232
	}
	cfg.MaxUDPSize = max(min(cfg.MaxUDPSize, dns.MaxMsgSize), dns.MinMsgSize)
	if cfg.UDPWorkers <= 0 {
		cfg.UDPWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = 256
	}
	if cfg.TransferAllow == nil {
		cfg.TransferAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for _, n := range cfg.Notify {
		host, _, err := net.SplitHostPort(n)
		if err != nil {
			return nil, fmt.Errorf("nameserver: config: notify %q: %w", n, err)
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return nil, fmt.Errorf("nameserver: config: notify %q: want an IP address: %w", n, err)
		}
		cfg.TransferAllow = append(cfg.TransferAllow, netip.PrefixFrom(a, a.BitLen()))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("nameserver", cfg.Name)
	s := &Server{
		cfg: cfg, logger: logger, maxUDP: cfg.MaxUDPSize,
		states: make(map[string]*zoneState),
		notify: make(chan string, 64),
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.qc = &queryCounters{vec: m.queries, server: cfg.Name}
	s.latUDP = m.latency.WithLabelValues(cfg.Name, "udp")
	s.latTCP = m.latency.WithLabelValues(cfg.Name, "tcp")
	s.checker = newChecker(cfg.Health, logger, m, s.healthChanged)
	r, err := newRRL(cfg.RRL)
	if err != nil {
		return nil, err
	}
	s.rrl = r
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start binds the UDP and TCP sockets, runs a first round of health
// checks, and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	if s.udp != nil {
		return errors.New("nameserver: already started")
	}
	udp, tcp, err := listenBoth(ctx, s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("nameserver: %s: listen %s: %w", s.cfg.Name, s.cfg.Addr, err)
	}
	s.udp, s.tcp = udp, tcp
	s.addr = udp.LocalAddr().String()
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel

	// The first health round decides the initial state before any answer.
	if s.checker.round(ctx) {
		s.healthChanged()
	}

	var udpWG sync.WaitGroup
	for range s.cfg.UDPWorkers {
		udpWG.Go(func() { s.serveUDP(udp) })
	}
	s.udpWG = &udpWG
	started := make(chan struct{})
	s.tcpSrv = &dns.Server{
		Listener:          &limitListener{Listener: tcp, sem: make(chan struct{}, s.cfg.MaxTCPConns)},
		Handler:           dns.HandlerFunc(s.serveTCP),
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       func() time.Duration { return 10 * time.Second },
		MaxTCPQueries:     -1,
		NotifyStartedFunc: func() { close(started) },
		MsgInvalidFunc:    func([]byte, error) { s.metrics.malformed.WithLabelValues(s.cfg.Name).Inc() },
	}
	s.wg.Go(func() {
		if err := s.tcpSrv.ActivateAndServe(); err != nil && runCtx.Err() == nil {
			s.logger.Error("nameserver: tcp server stopped", "err", err)
		}
	})
	select {
	case <-started:
	case <-ctx.Done():
	}
	s.wg.Go(func() { s.checker.run(runCtx) })
	s.wg.Go(func() { s.notifier(runCtx) })
	if s.cfg.ReloadInterval > 0 {
		s.wg.Go(func() { s.pollFiles(runCtx) })
	}
	s.logger.Info("nameserver: listening", "addr", s.addr, "zones", strings.Join(s.Origins(), " "))
	return nil
}

// Addr returns the bound host:port (after Start), else the configured one.
func (s *Server) Addr() string {
	if s.addr != "" {
		return s.addr
	}
	return s.cfg.Addr
}

// Stop closes the sockets and waits for in-flight queries and transfers,
// until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	var err error
	if s.tcpSrv != nil {
		err = s.tcpSrv.ShutdownContext(ctx)
	}
	s.udp.Close()
	done := make(chan struct{})
	go func() {
		s.udpWG.Wait()
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	s.cancel = nil
	return err
}

// Origins returns the served zone origins, sorted.
func (s *Server) Origins() []string {
	set := s.zones.Load()
	var out []string
	for o := range set.byOrigin {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Serial returns the served SOA serial of origin, and whether the zone is
// served.
func (s *Server) Serial(origin string) (uint32, bool) {
	zs := s.zones.Load().byOrigin[dns.CanonicalName(origin)]
	if zs == nil {
		return 0, false
	}
	return zs.soa.Load().soa.Serial, true
}

// Zone returns the current static version of origin (nil if not served).
func (s *Server) Zone(origin string) *Zone {
	zs := s.zones.Load().byOrigin[dns.CanonicalName(origin)]
	if zs == nil {
		return nil
	}
	return zs.zone.Load()
}

// HealthRounds returns how many rounds of health checks have completed
// (tests wait on it rather than on the clock).
func (s *Server) HealthRounds() uint64 { return s.checker.rounds.Load() }

// findZone returns the most specific zone containing qname.
func (set *zoneSet) findZone(qname string) *zoneState {
	for off, end := 0, false; !end; off, end = dns.NextLabel(qname, off) {
		if zs := set.byOrigin[qname[off:]]; zs != nil {
			return zs
		}
	}
	return set.byOrigin["."]
}

// Reload re-reads every zone (generated text and files, rescanning
// ZoneDir) and swaps in the new versions. A zone that fails to load keeps
// its previous version, and the error is returned (the other zones still
// change). Queries are served throughout: readers see either version.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfgs := slices.Clone(s.cfg.Zones)
	var errs []error
	// The directory listing is taken before the scan, so a file added
	// during it shows up as a change at the next poll.
	s.dirSeen = s.dirStamp()
	if s.cfg.ZoneDir != "" {
		extra, err := scanZoneDir(s.cfg.ZoneDir)
		if err != nil {
			errs = append(errs, err)
		}
		for origin, file := range extra {
			i := slices.IndexFunc(cfgs, func(c ZoneConfig) bool { return dns.CanonicalName(c.Origin) == origin })
			if i >= 0 {
				cfgs[i].Files = append(slices.Clone(cfgs[i].Files), file)
			} else {
				cfgs = append(cfgs, ZoneConfig{Origin: origin, Files: []string{file}})
			}
		}
	}
	set := &zoneSet{byOrigin: make(map[string]*zoneState, len(cfgs))}
	keepProbes := map[string]bool{}
	for _, zc := range cfgs {
		origin := dns.CanonicalName(zc.Origin)
		zs := s.states[origin]
		if zs == nil {
			zs = &zoneState{origin: origin}
		}
		if err := s.load(zs, zc); err != nil {
			s.metrics.reloads.WithLabelValues(s.cfg.Name, "error").Inc()
			s.logger.Error("nameserver: zone not loaded", "zone", origin, "err", err)
			errs = append(errs, err)
			if zs.zone.Load() == nil {
				continue // never loaded: not served
			}
		} else {
			s.metrics.reloads.WithLabelValues(s.cfg.Name, "ok").Inc()
		}
		set.byOrigin[origin] = zs
		s.states[origin] = zs
		for _, p := range zs.pools {
			for _, t := range p.targets {
				keepProbes[t.Health] = true
			}
		}
	}
	for origin := range s.states {
		if set.byOrigin[origin] == nil {
			delete(s.states, origin)
		}
	}
	s.checker.retain(keepProbes)
	if len(set.byOrigin) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("nameserver: no zones configured"))
	}
	s.zones.Store(set)
	return errors.Join(errs...)
}

// load parses one zone's sources and commits the result to zs.
func (s *Server) load(zs *zoneState, zc ZoneConfig) error {
	origin := zs.origin
	var rrs []dns.RR
	if zc.Text != "" {
		r, err := parseRecords(origin, strings.NewReader(zc.Text), origin)
		if err != nil {
			return err
		}
		rrs = r
	}
	stamps := make(map[string]fileStamp, len(zc.Files))
	for _, f := range zc.Files {
		fh, err := os.Open(f)
		if err != nil {
			return fmt.Errorf("nameserver: zone %s: %w", origin, err)
		}
		if st, err := fh.Stat(); err == nil {
			stamps[f] = fileStamp{mod: st.ModTime(), size: st.Size()}
		}
		r, err := parseRecords(origin, fh, f)
		fh.Close()
		if err != nil {
			return err
		}
		if len(rrs)+len(r) > MaxZoneRecords {
			return fmt.Errorf("nameserver: zone %s: more than %d records", origin, MaxZoneRecords)
		}
		rrs = append(rrs, r...)
	}
	// Pools: reuse the health state of targets by URL.
	var pools []*Pool
	for _, pc := range zc.Pools {
		name, err := pc.validate(origin)
		if err != nil {
			return err
		}
		p := &Pool{name: name, ttl: pc.TTL, policy: pc.Policy, count: pc.Count}
		if p.ttl == 0 {
			p.ttl = 5
		}
		if p.policy == "" {
			p.policy = PolicyAll
		}
		if p.count == 0 {
			p.count = 1
			if p.policy == PolicyAll {
				p.count = 8
			}
		}
		for _, t := range pc.Targets {
			t.Addr = t.Addr.Unmap()
			if t.ID == "" {
				t.ID = t.Addr.String()
			}
			p.targets = append(p.targets, &target{Target: t, healthy: s.checker.state(t.Health)})
		}
		pools = append(pools, p)
	}
	z, err := buildZone(origin, rrs, pools)
	if err != nil {
		return err
	}
	zs.cfg = zc
	zs.pools = pools
	zs.stamps = stamps
	s.commit(zs, z)
	return nil
}

// scanZoneDir returns the zone files in dir by origin.
func scanZoneDir(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("nameserver: zone dir: %w", err)
	}
	out := make(map[string]string)
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".zone") || strings.HasPrefix(name, ".") {
			continue
		}
		origin := dns.CanonicalName(strings.TrimSuffix(name, ".zone"))
		if origin == "root." {
			origin = "."
		}
		if _, ok := dns.IsDomainName(origin); !ok {
			continue
		}
		out[origin] = filepath.Join(dir, name)
	}
	return out, nil
}

// pollFiles reloads when a zone file or the zone directory changes.
func (s *Server) pollFiles(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		dir := s.dirStamp()
		s.mu.Lock()
		changed := dir != s.dirSeen
		for _, zs := range s.states {
			for _, f := range zs.cfg.Files {
				st, err := os.Stat(f)
				if err != nil || (fileStamp{mod: st.ModTime(), size: st.Size()}) != zs.stamps[f] {
					changed = true
				}
			}
		}
		s.mu.Unlock()
		if changed {
			if err := s.Reload(); err != nil {
				s.logger.Warn("nameserver: reload", "err", err)
			} else {
				s.logger.Info("nameserver: zones reloaded")
			}
		}
	}
}

func (s *Server) dirStamp() string {
	if s.cfg.ZoneDir == "" {
		return ""
	}
	ents, err := os.ReadDir(s.cfg.ZoneDir)
	if err != nil {
		return "error"
	}
	var b strings.Builder
	for _, e := range ents {
		b.WriteString(e.Name())
		b.WriteByte('/')
	}
	return b.String()
}

// healthChanged recomputes the transfer content of zones with pools: a
// changed healthy set bumps the serial and notifies secondaries.
func (s *Server) healthChanged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, zs := range s.states {
		if len(zs.pools) > 0 {
			if z := zs.zone.Load(); z != nil {
				s.commit(zs, z)
			}
		}
	}
}

// listenBoth binds UDP and TCP on the same address; with port 0 it picks
// a port free for both.
func listenBoth(ctx context.Context, addr string) (*net.UDPConn, net.Listener, error) {
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		udp := pc.(*net.UDPConn)
		ln, err := lc.Listen(ctx, "tcp", udp.LocalAddr().String())
		if err == nil {
			return udp, ln, nil
		}
		udp.Close()
		_, port, _ := net.SplitHostPort(addr)
		if port != "0" || attempt >= 20 {
			return nil, nil, err
		}
	}
}

// limitListener bounds concurrent connections.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
