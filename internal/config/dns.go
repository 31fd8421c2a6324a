package config

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/blueprint-media/blueprint/internal/nameserver"
)

// DNS configures the DNS roles: root, TLD and authoritative servers of the
// platform's zone (roles dns-root, dns-tld, dns-auth) and the caching resolver
// (role resolver). All listen on loopback addresses, one port for all.
type DNS struct {
	Enabled        bool          `yaml:"enabled" help:"run the DNS roles (dns-root, dns-tld, dns-auth, resolver) in the processes whose roles include them"`
	Zone           string        `yaml:"zone" help:"the platform's zone; its top-level domain is served by the dns-tld role"`
	Port           int           `yaml:"port" help:"port of every DNS server (glue carries no ports); 0 = 53 when it can be bound, else 5353, else a free port"`
	RootIP         string        `yaml:"root_ip" help:"loopback (or other) address of the root server"`
	TLDIP          string        `yaml:"tld_ip" help:"address of the TLD server"`
	AuthIP         string        `yaml:"auth_ip" help:"address of the platform zone's authoritative server"`
	ResolverIP     string        `yaml:"resolver_ip" help:"address of the resolver (point dig or /etc/resolv.conf here)"`
	ZoneDir        string        `yaml:"zone_dir" help:"directory of RFC 1035 zone files named ORIGIN.zone; ZONE.zone adds records to the platform zone, others are served as zones of their own"`
	ReloadInterval time.Duration `yaml:"reload_interval" help:"how often zone files are checked for changes (hot reload)"`
	Gateways       []string      `yaml:"gateways" help:"more gateways for www and the apex: \"ID ADDRESS [weight=N] [health=URL]\" (this process's gateway is added)"`
	Edges          []string      `yaml:"edges" help:"more CDN edges for edge.ZONE: \"ID ADDRESS region=R [weight=N] [health=URL]\" (this process's edge is added)"`
	EdgeRegion     string        `yaml:"edge_region" help:"region of this process's edge"`
	Regions        []string      `yaml:"regions" help:"client subnet to region map for geo steering: PREFIX=REGION entries, longest prefix wins"`
	DynamicTTL     time.Duration `yaml:"dynamic_ttl" help:"TTL of the health-checked gateway and edge answers"`
	HealthInterval time.Duration `yaml:"health_interval" help:"health check period of gateways and edges; two failed checks take one out"`
	RRLRate        float64       `yaml:"rrl_rate" help:"response rate limit: identical UDP responses per second per client network (0 = off)"`
	Notify         []string      `yaml:"notify" help:"secondaries (host:port) sent NOTIFY when the platform zone changes; they may transfer it"`
	TransferAllow  []string      `yaml:"transfer_allow" help:"networks allowed to AXFR/IXFR the zones"`
}

func defaultDNS() DNS {
	return DNS{
		Enabled:        true,
		Zone:           "blueprint.test.",
		RootIP:         "127.53.0.1",
		TLDIP:          "127.53.0.2",
		AuthIP:         "127.53.0.3",
		ResolverIP:     "127.53.0.53",
		ReloadInterval: 2 * time.Second,
		EdgeRegion:     "local",
		Regions:        []string{"127.0.0.0/8=local", "::1/128=local"},
		DynamicTTL:     time.Second,
		HealthInterval: 300 * time.Millisecond,
		RRLRate:        100,
		TransferAllow:  []string{"127.0.0.0/8", "::1/128"},
	}
}

func (c DNS) validate() error {
	if !c.Enabled {
		return nil
	}
	if _, ok := dns.IsDomainName(c.Zone); !ok || dns.CountLabel(dns.Fqdn(c.Zone)) < 2 {
		return keyErr("dns.zone", "%q is not a domain name with at least two labels (like blueprint.test.)", c.Zone)
	}
	if c.Port < 0 || c.Port > 65535 {
		return keyErr("dns.port", "out of range")
	}
	for key, ip := range map[string]string{"dns.root_ip": c.RootIP, "dns.tld_ip": c.TLDIP, "dns.auth_ip": c.AuthIP, "dns.resolver_ip": c.ResolverIP} {
		if _, err := netip.ParseAddr(ip); err != nil {
			return keyErr(key, "%q is not an IP address", ip)
		}
	}
	if c.RootIP == c.TLDIP || c.RootIP == c.AuthIP || c.TLDIP == c.AuthIP || c.ResolverIP == c.RootIP || c.ResolverIP == c.TLDIP || c.ResolverIP == c.AuthIP {
		return keyErr("dns.root_ip", "root, TLD, auth and resolver need four different addresses (they share one port)")
	}
	if c.ReloadInterval < 0 {
		return keyErr("dns.reload_interval", "negative")
	}
	for _, g := range c.Gateways {
		if _, err := nameserver.ParseTarget(g); err != nil {
			return keyErr("dns.gateways", "%v", strings.TrimPrefix(err.Error(), "nameserver: "))
		}
	}
	for _, e := range c.Edges {
		t, err := nameserver.ParseTarget(e)
		if err != nil {
			return keyErr("dns.edges", "%v", strings.TrimPrefix(err.Error(), "nameserver: "))
		}
		if t.Region == "" {
			return keyErr("dns.edges", "%q: region=R is required", e)
		}
	}
	if c.EdgeRegion == "" {
		return keyErr("dns.edge_region", "empty")
	}
	if _, err := nameserver.NewRegionMap(c.Regions, nil); err != nil {
		return keyErr("dns.regions", "%v", strings.TrimPrefix(err.Error(), "nameserver: "))
	}
	if c.DynamicTTL < time.Second || c.DynamicTTL > time.Hour {
		return keyErr("dns.dynamic_ttl", "want 1s to 1h")
	}
	if c.HealthInterval < 50*time.Millisecond || c.HealthInterval > time.Minute {
		return keyErr("dns.health_interval", "want 50ms to 1m")
	}
	if c.RRLRate < 0 {
		return keyErr("dns.rrl_rate", "negative")
	}
	for _, n := range c.Notify {
		host, _, err := net.SplitHostPort(n)
		if err != nil {
			return keyErr("dns.notify", "%q is not host:port", n)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return keyErr("dns.notify", "%q: host must be an IP address", n)
		}
	}
	for _, p := range c.TransferAllow {
		if _, err := netip.ParsePrefix(p); err != nil {
			return keyErr("dns.transfer_allow", "%q is not a prefix like 127.0.0.0/8", p)
		}
	}
	return nil
}
