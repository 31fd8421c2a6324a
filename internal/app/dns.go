package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/nameserver"
	"github.com/blueprint-media/blueprint/internal/resolver"
)

// dnsPart is one started DNS server, to stop on failure or at shutdown.
type dnsPart struct {
	name string
	stop func(context.Context) error
}

// startDNS starts the DNS roles this process runs: the root server, the
// TLD server, the platform zone's authoritative server (its gateway and
// edge answers come from the roles started above, health-checked) and the
// resolver. All listen on their own address and one shared port: 53 when
// it can be bound (the privileged layout), else 5353, else any free port,
// unless dns.port names one.
func (a *App) startDNS(ctx context.Context) error {
	c := a.cfg.DNS
	has := a.cfg.HasRole
	if !c.Enabled || !(has("dns-root") || has("dns-tld") || has("dns-auth") || has("resolver")) {
		return nil
	}
	ports := []int{c.Port}
	if c.Port == 0 {
		ports = []int{53, 5353, 0}
	}
	var errs []error
	for _, port := range ports {
		parts, err := a.startDNSOn(ctx, port)
		if err == nil {
			for _, p := range parts {
				a.onStop(p.stop)
			}
			return nil
		}
		errs = append(errs, err)
		a.logger.Info("dns: port not usable, trying the next", "port", port, "err", err)
	}
	err := errors.Join(errs...)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		// Linux routes all of 127.0.0.0/8 to the loopback interface; other
		// systems (macOS) have only 127.0.0.1 until aliases are added. The
		// rest of the platform does not need DNS, so it runs without.
		a.logger.Error("dns: not started: its loopback addresses are not configured on this machine; add them (macOS: sudo ifconfig lo0 alias 127.53.0.1 up, and .2, .3, .53) or set dns.root_ip, dns.tld_ip, dns.auth_ip, dns.resolver_ip",
			"err", err)
		return nil
	}
	return fmt.Errorf("app: dns: %w", err)
}

// startDNSOn starts every DNS part on port (0: the first part picks a free
// port, the others take the same). On error it stops what it started.
func (a *App) startDNSOn(ctx context.Context, port int) (parts []dnsPart, err error) {
	c := a.cfg.DNS
	has := a.cfg.HasRole
	l := nameserver.DefaultLayout(c.Zone, port)
	l.RootIP = netip.MustParseAddr(c.RootIP)
	l.TLDIP = netip.MustParseAddr(c.TLDIP)
	l.AuthIP = netip.MustParseAddr(c.AuthIP)
	l.ResolverIP = netip.MustParseAddr(c.ResolverIP)
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for i := len(parts) - 1; i >= 0; i-- {
				parts[i].stop(stopCtx)
			}
			parts = nil
		}
	}()
	var allow []netip.Prefix
	for _, p := range c.TransferAllow {
		allow = append(allow, netip.MustParsePrefix(p))
	}
	serial := uint32(time.Now().Unix())
	logger := a.logger.With("role", "dns")
	start := func(name string, ip netip.Addr, cfg nameserver.Config) (*nameserver.Server, error) {
		cfg.Name = name
		cfg.Addr = netip.AddrPortFrom(ip, uint16(l.Port)).String()
		cfg.TransferAllow = allow
		cfg.RRL = nameserver.RRLConfig{Rate: c.RRLRate, Exempt: []netip.Prefix{netip.PrefixFrom(l.ResolverIP, l.ResolverIP.BitLen())}}
		s, err := nameserver.New(cfg, logger, a.reg)
		if err != nil {
			return nil, err
		}
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
		parts = append(parts, dnsPart{name: name, stop: s.Stop})
		if l.Port == 0 {
			_, p, _ := net.SplitHostPort(s.Addr())
			l.Port, _ = strconv.Atoi(p)
		}
		return s, nil
	}
	if has("dns-root") {
		if _, err := start("root", l.RootIP, nameserver.Config{Zones: []nameserver.ZoneConfig{{Origin: ".", Text: l.RootZone(serial)}}}); err != nil {
			return parts, err
		}
	}
	if has("dns-tld") {
		if _, err := start("tld", l.TLDIP, nameserver.Config{Zones: []nameserver.ZoneConfig{{Origin: l.TLD(), Text: l.TLDZone(serial, nil, "")}}}); err != nil {
			return parts, err
		}
	}
	var authSrv *nameserver.Server
	if has("dns-auth") {
		cfg, err := a.platformZone(l, serial)
		if err != nil {
			return parts, err
		}
		auth, err := start("auth", l.AuthIP, cfg)
		if err != nil {
			return parts, err
		}
		authSrv = auth
	}
	if has("resolver") {
		r, err := resolver.New(resolver.Config{
			Addr:      netip.AddrPortFrom(l.ResolverIP, uint16(l.Port)).String(),
			RootHints: l.RootHints(),
			Port:      l.Port,
		}, a.logger.With("role", "resolver"), replacingRegisterer{a.reg})
		if err != nil {
			return parts, err
		}
		if err := r.Start(ctx); err != nil {
			return parts, err
		}
		parts = append(parts, dnsPart{name: "resolver", stop: r.Stop})
		if l.Port == 0 {
			_, p, _ := net.SplitHostPort(r.Addr())
			l.Port, _ = strconv.Atoi(p)
		}
	}
	// Admin endpoints only once everything started (a retry on another
	// port must not register them twice).
	if auth := authSrv; auth != nil {
		a.adminMux.Handle("GET /dns/explain", auth.ExplainHandler())
		a.adminMux.HandleFunc("POST /dns/reload", func(w http.ResponseWriter, r *http.Request) {
			if err := auth.Reload(); err != nil {
				http.Error(w, err.Error(), http.StatusUnprocessableEntity)
				return
			}
			w.Write([]byte("reloaded\n"))
		})
	}
	a.adminMux.HandleFunc("GET /dns/layout", func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, dnsLayoutJSON{
			Zone: l.Zone, Port: l.Port, Root: l.RootIP.String(), TLD: l.TLDIP.String(),
			Auth: l.AuthIP.String(), Resolver: l.ResolverIP.String(),
		})
	})
	a.logger.Info("dns ready", "port", l.Port, "root", l.RootIP, "tld", l.TLDIP, "auth", l.AuthIP, "resolver", l.ResolverIP,
		"try", fmt.Sprintf("dig @%s -p %d www.%s", l.ResolverIP, l.Port, l.Zone))
	return parts, nil
}

// platformZone is the authoritative server's configuration: the generated
// zone (SOA, NS, the servers' own names), the gateway and edge pools, and
// zone files from dns.zone_dir.
func (a *App) platformZone(l nameserver.Layout, serial uint32) (nameserver.Config, error) {
	c := a.cfg.DNS
	var gateways, edges []nameserver.Target
	var records string
	if a.gatewaySv != nil {
		ip, port := listenerIP(a.gatewaySv.Addr())
		// A TCP connect check: an HTTP check would go through the gateway's
		// access log and rate limiter every few hundred milliseconds.
		gateways = append(gateways, nameserver.Target{
			ID: "gateway-1", Addr: ip, Weight: 1, Health: "tcp://" + net.JoinHostPort(ip.String(), strconv.Itoa(port)),
		})
		records += fmt.Sprintf("gateway-1 60 IN A %s\n_http._tcp.www 60 IN SRV 0 1 %d gateway-1\n", ip, port)
	}
	for _, spec := range c.Gateways {
		t, err := nameserver.ParseTarget(spec)
		if err != nil {
			return nameserver.Config{}, err
		}
		gateways = append(gateways, t)
	}
	if a.edgeSv != nil {
		ip, port := listenerIP(a.edgeSv.Addr())
		base := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
		edges = append(edges, nameserver.Target{ID: "edge-1", Addr: ip, Region: c.EdgeRegion, Health: base + "/healthz"})
		records += fmt.Sprintf("edge-1 60 IN A %s\n_http._tcp.edge 60 IN SRV 0 1 %d edge-1\n", ip, port)
	}
	for _, spec := range c.Edges {
		t, err := nameserver.ParseTarget(spec)
		if err != nil {
			return nameserver.Config{}, err
		}
		edges = append(edges, t)
	}
	ttl := uint32(c.DynamicTTL / time.Second)
	var pools []nameserver.PoolConfig
	if len(gateways) > 0 {
		pools = append(pools,
			nameserver.PoolConfig{Name: "@", TTL: ttl, Policy: nameserver.PolicyWeighted, Targets: gateways},
			nameserver.PoolConfig{Name: "www", TTL: ttl, Policy: nameserver.PolicyWeighted, Targets: gateways},
			nameserver.PoolConfig{Name: "gateways", TTL: ttl, Policy: nameserver.PolicyAll, Targets: gateways},
		)
	}
	if len(edges) > 0 {
		pools = append(pools,
			nameserver.PoolConfig{Name: "edge", TTL: ttl, Policy: nameserver.PolicyGeo, Targets: edges},
			nameserver.PoolConfig{Name: "edges", TTL: ttl, Policy: nameserver.PolicyAll, Targets: edges},
		)
	}
	regions, err := nameserver.NewRegionMap(c.Regions, nil)
	if err != nil {
		return nameserver.Config{}, err
	}
	zc := nameserver.ZoneConfig{Origin: l.Zone, Text: l.PlatformZone(serial, records), Pools: pools}
	cfg := nameserver.Config{
		Zones: []nameserver.ZoneConfig{zc}, ZoneDir: c.ZoneDir, Regions: regions, Notify: c.Notify,
		Health: nameserver.HealthConfig{Interval: c.HealthInterval},
	}
	if c.ZoneDir != "" {
		cfg.ZoneDir = filepath.Clean(c.ZoneDir)
		cfg.ReloadInterval = c.ReloadInterval
	}
	return cfg, nil
}

// listenerIP returns the address DNS answers give for a listener: its IP,
// or 127.0.0.1 when it listens on every interface.
func listenerIP(addr net.Addr) (netip.Addr, int) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.MustParseAddr("127.0.0.1"), 0
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	return ip, int(ap.Port())
}

// replacingRegisterer registers collectors, replacing ones registered
// before under the same description: a resolver built for a port that
// turned out busy leaves its metrics behind, and the next one takes over.
type replacingRegisterer struct{ prometheus.Registerer }

func (r replacingRegisterer) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		r.Registerer.Unregister(are.ExistingCollector)
		return r.Registerer.Register(c)
	}
	return err
}

// dnsLayoutJSON is GET /dns/layout on the admin listener: where the DNS
// parts listen.
type dnsLayoutJSON struct {
	Zone     string `json:"zone"`
	Port     int    `json:"port"`
	Root     string `json:"root"`
	TLD      string `json:"tld"`
	Auth     string `json:"auth"`
	Resolver string `json:"resolver"`
}
