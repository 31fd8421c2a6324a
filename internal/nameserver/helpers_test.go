package nameserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// testZoneText is the zone most tests serve.
const testZoneText = `$ORIGIN example.test.
$TTL 3600
@        IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300
@        IN NS  ns1
@        IN NS  ns2
ns1      IN A   127.0.0.1
ns2      IN A   127.0.0.2
@        60 IN CAA 0 issue "letsencrypt.org"
www      60 IN A    192.0.2.1
www      60 IN A    192.0.2.2
www      60 IN AAAA 2001:db8::1
alias    60 IN CNAME www
chain    60 IN CNAME alias
dangling 60 IN CNAME nowhere
out      60 IN CNAME www.elsewhere.test.
mail     60 IN MX 10 mx
mx       60 IN A 192.0.2.25
txt      60 IN TXT "hello world" "second string"
_http._tcp 60 IN SRV 0 5 8080 www
*.wild   60 IN A 192.0.2.99
*.wild   60 IN TXT "wildcard"
ent.deep 60 IN TXT "x"
sub      IN NS ns.sub
sub      IN NS ns.other.test.
sub      IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns.sub   IN A 192.0.2.53
`

type testServer struct {
	*Server
	reg *prometheus.Registry
}

// startServer runs a server on a free loopback port until the test ends.
func startServer(t testing.TB, cfg Config, beforeStart ...func(*Server)) *testServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Zones == nil && cfg.ZoneDir == "" {
		cfg.Zones = []ZoneConfig{{Origin: "example.test.", Text: testZoneText}}
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range beforeStart {
		f(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return &testServer{Server: s, reg: reg}
}

// query asks s over UDP (with EDNS unless noEDNS) and fails the test on
// transport errors.
func query(t testing.TB, addr, name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	for _, o := range opts {
		o(m)
	}
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply id %d for query %d", r.Id, m.Id)
	}
	return r
}

func withECS(prefix string) func(*dns.Msg) {
	p := netip.MustParsePrefix(prefix)
	return func(m *dns.Msg) {
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
		if p.Addr().Is6() {
			e.Family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	}
}

func noEDNS(m *dns.Msg) { m.Extra = nil }

func replyECS(r *dns.Msg) *dns.EDNS0_SUBNET {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				return e
			}
		}
	}
	return nil
}

// addrs returns the A/AAAA data in the answer section, as strings.
func addrs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	return out
}

// healthTarget is a real HTTP server whose /healthz can be switched off.
type healthTarget struct {
	srv  *httptest.Server
	down atomic.Bool
}

func newHealthTarget(t testing.TB) *healthTarget {
	h := &healthTarget{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *healthTarget) url() string { return h.srv.URL + "/healthz" }

// waitRounds waits until n more health rounds have completed.
func waitRounds(t testing.TB, s *Server, n uint64) {
	t.Helper()
	target := s.HealthRounds() + n
	deadline := time.Now().Add(30 * time.Second)
	for s.HealthRounds() < target {
		if time.Now().After(deadline) {
			t.Fatalf("health rounds stuck at %d", s.HealthRounds())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
