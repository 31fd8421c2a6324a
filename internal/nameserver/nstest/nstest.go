// Package nstest starts a whole DNS hierarchy on loopback for tests: a
// root server, a TLD server and the authoritative server of a platform
// zone, all Blueprint nameserver instances, stopped when the test ends.
//
// # The port contract
//
// Glue records carry addresses, not ports, so every server of the
// hierarchy listens on its own loopback address and all of them on the
// same port, Hierarchy.Port (a free port, or 53 when asked for):
//
//	root  127.53.0.1:Port  zone "."       delegates test.            to ns1.nic.test.      (glue 127.53.0.2)
//	TLD   127.53.0.2:Port  zone "test."   delegates blueprint.test.  to ns1.blueprint.test. (glue 127.53.0.3)
//	auth  127.53.0.3:Port  zone "blueprint.test." (and Options.ExtraZones)
//
// A resolver walking the hierarchy starts at Hierarchy.RootHints (root
// address and port) and must send every later query, to any address it
// learns from referrals and glue, to that same port. On Linux all of
// 127.0.0.0/8 is local, so no setup is needed.
//
// Unbound cannot take a port for root hints, and sends queries to
// referral targets on port 53; give it one stub-zone per zone cut
// instead, as Hierarchy.UnboundStubs writes them (with
// do-not-query-localhost: no, and local-zone: "test." nodefault since
// Unbound answers RFC 6761 names itself by default).
package nstest

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/nameserver"
)

// DefaultRecords are the platform zone's records when Options.Records is
// empty (names relative to the zone; TTL 60):
//
//	www        A 127.0.0.10, AAAA fd00::10
//	alias      CNAME www          (in-zone CNAME)
//	chain      CNAME alias        (two-step chain)
//	dangling   CNAME nowhere      (CNAME to a missing name: NXDOMAIN)
//	mail       MX 10 mx.<zone>;  mx A 127.0.0.11
//	txt        TXT "hello world" "second string"
//	_http._tcp SRV 0 5 8080 www
//	@          CAA 0 issue "letsencrypt.org"
//	*.wild     A 127.0.0.12       (wildcard)
//	ent.deep   TXT "x"            (deep is an empty non-terminal: NODATA)
const DefaultRecords = `www 60 IN A 127.0.0.10
www 60 IN AAAA fd00::10
alias 60 IN CNAME www
chain 60 IN CNAME alias
dangling 60 IN CNAME nowhere
mail 60 IN MX 10 mx
mx 60 IN A 127.0.0.11
txt 60 IN TXT "hello world" "second string"
_http._tcp 60 IN SRV 0 5 8080 www
@ 60 IN CAA 0 issue "letsencrypt.org"
*.wild 60 IN A 127.0.0.12
ent.deep 60 IN TXT "x"
`

// Options shape the hierarchy. The zero value gives blueprint.test. with
// DefaultRecords on a free port.
type Options struct {
	Zone    string                  // platform zone (default "blueprint.test.")
	Records string                  // its records, zone text relative to Zone (default DefaultRecords)
	Pools   []nameserver.PoolConfig // dynamic names in the platform zone
	Regions *nameserver.RegionMap   // for geo pools
	Health  nameserver.HealthConfig // health checks of pool targets
	Notify  []string                // secondaries of the platform zone
	RRL     nameserver.RRLConfig    // off unless set
	// ExtraZones are more zones served by the authoritative server, origin
	// to zone text (records only: SOA and NS are generated). Each must be
	// under the TLD; the TLD delegates it to ns1.<Zone>.
	ExtraZones map[string]string
	// TLDRecords are appended to the TLD zone (e.g. a glue-less
	// delegation "other.test. NS ns.elsewhere.test.").
	TLDRecords string
	// Port: 0 picks a free port; any other value is used as given.
	Port int
	// IPs overrides the loopback addresses (root, TLD, auth).
	RootIP, TLDIP, AuthIP netip.Addr
	// Registry for the servers' metrics (default: a fresh one).
	Registry prometheus.Registerer
}

// Hierarchy is a running root → TLD → platform zone chain.
type Hierarchy struct {
	Layout    nameserver.Layout
	Port      int
	Root      *nameserver.Server
	TLD       *nameserver.Server
	Auth      *nameserver.Server
	RootAddr  string   // host:port
	TLDAddr   string   // host:port
	AuthAddr  string   // host:port
	RootHints []string // the root server as host:port
	Zone      string   // the platform zone
	Zones     []string // every zone cut: ".", the TLD, the platform zone, extra zones
}

// StartHierarchy starts the three servers and stops them at the end of
// the test.
func StartHierarchy(t testing.TB, opts Options) *Hierarchy {
	t.Helper()
	h, stop, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := stop(ctx); err != nil {
			t.Errorf("nstest: stop: %v", err)
		}
	})
	return h
}

// Start starts a hierarchy outside a test (benchmarks, tools); call stop
// to stop it.
func Start(ctx context.Context, opts Options) (*Hierarchy, func(context.Context) error, error) {
	if opts.Zone == "" {
		opts.Zone = "blueprint.test."
	}
	if opts.Records == "" {
		opts.Records = DefaultRecords
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		l := nameserver.DefaultLayout(opts.Zone, opts.Port)
		if opts.RootIP.IsValid() {
			l.RootIP = opts.RootIP
		}
		if opts.TLDIP.IsValid() {
			l.TLDIP = opts.TLDIP
		}
		if opts.AuthIP.IsValid() {
			l.AuthIP = opts.AuthIP
		}
		h, stop, err := start(ctx, l, opts)
		if err == nil {
			return h, stop, nil
		}
		lastErr = err
		if opts.Port != 0 {
			break
		}
	}
	return nil, nil, lastErr
}

func start(ctx context.Context, l nameserver.Layout, opts Options) (*Hierarchy, func(context.Context) error, error) {
	serial := uint32(time.Now().Unix())
	var extra []nameserver.Delegation
	zones := []string{".", l.TLD(), l.Zone}
	authZones := []nameserver.ZoneConfig{{
		Origin: l.Zone, Text: l.PlatformZone(serial, opts.Records), Pools: opts.Pools,
	}}
	for origin, text := range opts.ExtraZones {
		origin = dns.CanonicalName(origin)
		if !dns.IsSubDomain(l.TLD(), origin) {
			return nil, nil, fmt.Errorf("extra zone %s is not under %s", origin, l.TLD())
		}
		extra = append(extra, nameserver.Delegation{Zone: origin, NS: []nameserver.NameServer{l.AuthNS()}})
		soa := nameserver.DefaultSOA(serial)
		soa.MinTTL = 60
		authZones = append(authZones, nameserver.ZoneConfig{
			Origin: origin,
			Text:   nameserver.DelegationZone(origin, []nameserver.NameServer{l.AuthNS()}, soa, nil, "$ORIGIN "+origin+"\n"+text),
		})
		zones = append(zones, origin)
	}
	var started []*nameserver.Server
	stopAll := func(ctx context.Context) error {
		var errs []string
		for i := len(started) - 1; i >= 0; i-- {
			if err := started[i].Stop(ctx); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
	mk := func(name string, ip netip.Addr, zc []nameserver.ZoneConfig) (*nameserver.Server, error) {
		cfg := nameserver.Config{
			Name: name, Addr: netip.AddrPortFrom(ip, uint16(l.Port)).String(), Zones: zc,
			UDPWorkers: 2,
		}
		if name == "auth" {
			cfg.Regions, cfg.Health, cfg.Notify, cfg.RRL = opts.Regions, opts.Health, opts.Notify, opts.RRL
		}
		s, err := nameserver.New(cfg, nil, opts.Registry)
		if err != nil {
			return nil, err
		}
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
		started = append(started, s)
		if l.Port == 0 {
			l.Port = int(netip.MustParseAddrPort(s.Addr()).Port())
		}
		return s, nil
	}
	root, err := mk("root", l.RootIP, []nameserver.ZoneConfig{{Origin: ".", Text: l.RootZone(serial)}})
	if err != nil {
		stopAll(ctx)
		return nil, nil, err
	}
	tld, err := mk("tld", l.TLDIP, []nameserver.ZoneConfig{{Origin: l.TLD(), Text: l.TLDZone(serial, extra, opts.TLDRecords)}})
	if err != nil {
		stopAll(ctx)
		return nil, nil, err
	}
	auth, err := mk("auth", l.AuthIP, authZones)
	if err != nil {
		stopAll(ctx)
		return nil, nil, err
	}
	h := &Hierarchy{
		Layout: l, Port: l.Port, Root: root, TLD: tld, Auth: auth,
		RootAddr: root.Addr(), TLDAddr: tld.Addr(), AuthAddr: auth.Addr(),
		RootHints: l.RootHints(), Zone: l.Zone, Zones: zones,
	}
	return h, stopAll, nil
}

// UnboundStubs returns unbound.conf stub-zone clauses that send each zone
// of the hierarchy to its server on Port (Unbound would use port 53 for
// referral targets). Put them after the server: clause.
func (h *Hierarchy) UnboundStubs() string {
	var b strings.Builder
	for _, z := range h.Zones {
		addr := h.Layout.AuthIP
		switch z {
		case ".":
			addr = h.Layout.RootIP
		case h.Layout.TLD():
			addr = h.Layout.TLDIP
		}
		fmt.Fprintf(&b, "stub-zone:\n    name: %q\n    stub-addr: %s@%d\n    stub-first: no\n", z, addr, h.Port)
	}
	return b.String()
}

// Query sends one query over UDP to addr (host:port) and returns the
// reply; a helper for tests.
func Query(addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}
