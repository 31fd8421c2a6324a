package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Config configures a Resolver. The zero value of every field but Addr and
// RootHints means its default.
type Config struct {
	// Addr is the listen address (host:port) for both UDP and TCP. Port 0
	// picks a free port; Addr() reports the one chosen.
	Addr string
	// RootHints are the root servers as host:port (IP literals). The
	// resolver starts every walk from them; it does not prime.
	RootHints []string
	// Port is the port used for every server address learned from a
	// referral (NS glue or a resolved NS name), since NS records cannot
	// carry ports. Zero means 53.
	Port int
	// ServerPorts overrides Port for particular server IPs.
	ServerPorts map[string]int

	// CacheEntries bounds the number of cached answers (positive and
	// negative); delegations and the server table share the bound. Zero
	// means 100000.
	CacheEntries int
	// MaxTTL caps positive TTLs. Zero means 24 hours.
	MaxTTL time.Duration
	// MaxNegativeTTL caps negative TTLs (RFC 2308 section 5). Zero means 3
	// hours.
	MaxNegativeTTL time.Duration
	// StaleWindow is how long an expired answer is kept to be served when
	// its refresh fails (RFC 8767). Zero means 24 hours; negative disables
	// serve-stale.
	StaleWindow time.Duration
	// StaleTTL is the TTL of a stale answer (RFC 8767 recommends 30 s).
	// Zero means 30 seconds.
	StaleTTL time.Duration

	// StaleRecheck is how long an answer served stale after a failed
	// refresh is served without a new attempt (RFC 8767's failure recheck
	// timer). Zero means 30 seconds.
	StaleRecheck time.Duration
	// FailureTTL is how long a failed resolution is remembered and answered
	// SERVFAIL without a new attempt (RFC 9520). Zero means 5 seconds;
	// negative disables it.
	FailureTTL time.Duration

	// DisableQNAMEMinimisation sends the full query name to every server
	// instead of one label more than the zone it serves (RFC 9156).
	DisableQNAMEMinimisation bool

	// MaxReferrals bounds the referrals followed for one name. Zero means 16.
	MaxReferrals int
	// MaxCNAMEs bounds the CNAME chain followed for one query. Zero means 10.
	MaxCNAMEs int
	// MaxDepth bounds nested resolutions of name server addresses. Zero
	// means 4.
	MaxDepth int
	// MaxQueriesPerRequest bounds the upstream queries one client query may
	// cause (all nested work included). Zero means 64.
	MaxQueriesPerRequest int
	// MaxOutstanding bounds the upstream queries in flight at once. Zero
	// means 1024.
	MaxOutstanding int
	// MaxClientQueries bounds the client queries being resolved at once
	// (cache hits do not count); above it new misses are refused. Zero
	// means 4096.
	MaxClientQueries int
	// MaxTCPConns bounds concurrent client TCP connections. Zero means 256.
	MaxTCPConns int

	// QueryTimeout is the time to wait for one upstream answer. Zero means
	// 800 ms.
	QueryTimeout time.Duration
	// ResolveTimeout bounds the whole resolution of one client query. Zero
	// means 5 seconds.
	ResolveTimeout time.Duration
	// TCPIdleTimeout closes idle client TCP connections. Zero means 10 s.
	TCPIdleTimeout time.Duration
	// UDPSize is the EDNS0 UDP payload size advertised upstream and the
	// largest UDP answer sent to clients. Zero means 1232.
	UDPSize int
	// Readers is the number of goroutines reading the UDP socket. Zero
	// means GOMAXPROCS.
	Readers int

	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Port, 53)
	def(&c.CacheEntries, 100000)
	defd(&c.MaxTTL, 24*time.Hour)
	defd(&c.MaxNegativeTTL, 3*time.Hour)
	defd(&c.StaleWindow, 24*time.Hour)
	defd(&c.StaleTTL, 30*time.Second)
	defd(&c.StaleRecheck, 30*time.Second)
	defd(&c.FailureTTL, 5*time.Second)
	def(&c.MaxReferrals, 16)
	def(&c.MaxCNAMEs, 10)
	def(&c.MaxDepth, 4)
	def(&c.MaxQueriesPerRequest, 64)
	def(&c.MaxOutstanding, 1024)
	def(&c.MaxClientQueries, 4096)
	def(&c.MaxTCPConns, 256)
	defd(&c.QueryTimeout, 800*time.Millisecond)
	defd(&c.ResolveTimeout, 5*time.Second)
	defd(&c.TCPIdleTimeout, 10*time.Second)
	def(&c.UDPSize, 1232)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate reports the first invalid field of a defaulted Config.
func (c Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("resolver: Addr %q: %w", c.Addr, err)
	}
	if len(c.RootHints) == 0 {
		return fmt.Errorf("resolver: RootHints is empty")
	}
	for _, h := range c.RootHints {
		if _, err := parseServerAddr(h, 53); err != nil {
			return fmt.Errorf("resolver: RootHints: %w", err)
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("resolver: Port %d is out of range", c.Port)
	}
	for ip, p := range c.ServerPorts {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("resolver: ServerPorts key %q is not an IP address", ip)
		}
		if p < 1 || p > 65535 {
			return fmt.Errorf("resolver: ServerPorts[%s] %d is out of range", ip, p)
		}
	}
	for name, v := range map[string]int{
		"CacheEntries": c.CacheEntries, "MaxReferrals": c.MaxReferrals, "MaxCNAMEs": c.MaxCNAMEs,
		"MaxDepth": c.MaxDepth, "MaxQueriesPerRequest": c.MaxQueriesPerRequest,
		"MaxOutstanding": c.MaxOutstanding, "MaxClientQueries": c.MaxClientQueries,
		"MaxTCPConns": c.MaxTCPConns, "Readers": c.Readers + 1,
	} {
		if v < 1 {
			return fmt.Errorf("resolver: %s %d must be positive", name, v)
		}
	}
	for name, v := range map[string]time.Duration{
		"MaxTTL": c.MaxTTL, "MaxNegativeTTL": c.MaxNegativeTTL, "StaleTTL": c.StaleTTL, "StaleRecheck": c.StaleRecheck,
		"QueryTimeout": c.QueryTimeout, "ResolveTimeout": c.ResolveTimeout, "TCPIdleTimeout": c.TCPIdleTimeout,
	} {
		if v < 0 {
			return fmt.Errorf("resolver: %s %s is negative", name, v)
		}
	}
	if c.UDPSize < 512 || c.UDPSize > 65535 {
		return fmt.Errorf("resolver: UDPSize %d is not between 512 and 65535", c.UDPSize)
	}
	return nil
}

// parseServerAddr parses "ip" or "ip:port" (IPv6 in brackets with a port)
// into an address, using defPort when there is none.
func parseServerAddr(s string, defPort int) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("server address %q has port 0", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(defPort)), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server address %q is not ip or ip:port", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server address %q: host is not an IP address", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return netip.AddrPort{}, fmt.Errorf("server address %q: bad port", s)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}
