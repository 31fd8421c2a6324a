package resolver

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ask sends one query to the resolver over UDP (TCP with tcp set) and
// returns the reply.
func ask(t testing.TB, r *Resolver, name string, qtype uint16, tcp bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(m, r.Addr())
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return resp
}

// rrStrings returns the records without TTLs, sorted.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		c.Header().Name = strings.ToLower(c.Header().Name)
		out = append(out, c.String())
	}
	sort.Strings(out)
	return out
}

func TestResolvePositiveWithMinimisation(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, nil)

	resp := ask(t, r, "H1.bench.test.", dns.TypeA, false)
	if resp.Rcode != dns.RcodeSuccess || !resp.RecursionAvailable || !resp.Response {
		t.Fatalf("reply header: %v", resp.MsgHdr)
	}
	if got := rrStrings(resp.Answer); !slices.Equal(got, []string{"h1.bench.test.\t0\tIN\tA\t10.0.0.1"}) {
		t.Fatalf("answer %q", got)
	}
	if resp.Question[0].Name != "H1.bench.test." {
		t.Errorf("question case not kept: %s", resp.Question[0].Name)
	}
	// RFC 9156: each level sees one label more than its zone, type A.
	if got := h.servers["root"].names(); !slices.Equal(got, []string{"test./A"}) {
		t.Errorf("root saw %v", got)
	}
	if got := h.servers["tld"].names(); !slices.Equal(got, []string{"bench.test./A"}) {
		t.Errorf("TLD saw %v", got)
	}
	if got := h.servers["auth"].names(); !slices.Equal(got, []string{"h1.bench.test./A"}) {
		t.Errorf("auth saw %v", got)
	}
	// Cached: nothing goes upstream, the TTL counts down.
	resp = ask(t, r, "h1.bench.test.", dns.TypeA, false)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl > 300 {
		t.Fatalf("cached answer %v", resp.Answer)
	}
	for _, s := range h.servers {
		if q := s.queries(); len(q) > 0 {
			t.Errorf("%s queried on a cache hit: %v", s.addr, q)
		}
	}
	// A later name of the same zone costs one upstream query.
	ask(t, r, "h2.bench.test.", dns.TypeAAAA, false)
	if got := h.servers["auth"].names(); !slices.Equal(got, []string{"h2.bench.test./AAAA"}) {
		t.Errorf("auth saw %v", got)
	}
	if n := len(h.servers["root"].queries()) + len(h.servers["tld"].queries()); n != 0 {
		t.Errorf("root/TLD queried again: %d", n)
	}
}

func TestNoMinimisation(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, func(c *Config) { c.DisableQNAMEMinimisation = true })
	ask(t, r, "h1.bench.test.", dns.TypeA, false)
	if got := h.servers["root"].names(); !slices.Equal(got, []string{"h1.bench.test./A"}) {
		t.Errorf("root saw %v", got)
	}
}

func TestAnswers(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, nil)
	cases := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		soa    string // owner of the SOA in the authority section, if any
	}{
		{"h2.bench.test.", dns.TypeA, dns.RcodeSuccess, []string{"h2.bench.test.\t0\tIN\tA\t10.0.0.2", "h2.bench.test.\t0\tIN\tA\t10.0.0.3"}, ""},
		{"c2.bench.test.", dns.TypeA, dns.RcodeSuccess, []string{"c1.bench.test.\t0\tIN\tCNAME\th1.bench.test.", "c2.bench.test.\t0\tIN\tCNAME\tc1.bench.test.", "h1.bench.test.\t0\tIN\tA\t10.0.0.1"}, ""},
		{"ext.bench.test.", dns.TypeA, dns.RcodeSuccess, []string{"ext.bench.test.\t0\tIN\tCNAME\twww.example.", "www.example.\t0\tIN\tA\t192.0.2.80"}, ""},
		{"c1.bench.test.", dns.TypeCNAME, dns.RcodeSuccess, []string{"c1.bench.test.\t0\tIN\tCNAME\th1.bench.test."}, ""},
		{"nx.bench.test.", dns.TypeA, dns.RcodeNameError, nil, "bench.test."},
		{"deep.nx.bench.test.", dns.TypeA, dns.RcodeNameError, nil, "bench.test."},
		{"h1.bench.test.", dns.TypeMX, dns.RcodeSuccess, nil, "bench.test."},
		{"ent.bench.test.", dns.TypeA, dns.RcodeSuccess, nil, "bench.test."},
		{"a.b.ent.bench.test.", dns.TypeA, dns.RcodeSuccess, []string{"a.b.ent.bench.test.\t0\tIN\tA\t10.0.0.4"}, ""},
		{"foo.wild.bench.test.", dns.TypeA, dns.RcodeSuccess, []string{"foo.wild.bench.test.\t0\tIN\tA\t10.0.0.5"}, ""},
		{"x.sub.bench.test.", dns.TypeA, dns.RcodeSuccess, []string{"x.sub.bench.test.\t0\tIN\tA\t10.1.0.1"}, ""},
		{"nx.sub.bench.test.", dns.TypeA, dns.RcodeNameError, nil, "sub.bench.test."},
		{"www.example.", dns.TypeA, dns.RcodeSuccess, []string{"www.example.\t0\tIN\tA\t192.0.2.80"}, ""},
		{"t1.bench.test.", dns.TypeTXT, dns.RcodeSuccess, []string{"t1.bench.test.\t0\tIN\tTXT\t\"hello\""}, ""},
		{"nope.", dns.TypeA, dns.RcodeNameError, nil, "."},
		{"bench.test.", dns.TypeNS, dns.RcodeSuccess, []string{"bench.test.\t0\tIN\tNS\tns1.bench.test."}, ""},
		{"bench.test.", dns.TypeSOA, dns.RcodeSuccess, []string{"bench.test.\t0\tIN\tSOA\tns1.bench.test. hostmaster.bench.test. 2024010101 7200 3600 1209600 300"}, ""},
		{"bench.test.", dns.TypeDS, dns.RcodeSuccess, nil, "test."},
		{"sub.bench.test.", dns.TypeDS, dns.RcodeSuccess, nil, "bench.test."},
		{".", dns.TypeNS, dns.RcodeSuccess, []string{".\t0\tIN\tNS\ta.root."}, ""},
		{"lame.test.", dns.TypeA, dns.RcodeServerFailure, nil, ""},
		{"loop1.bench.test.", dns.TypeA, dns.RcodeServerFailure, nil, ""},
	}
	for _, tc := range cases {
		for _, tcp := range []bool{false, true} {
			resp := ask(t, r, tc.name, tc.qtype, tcp)
			if resp.Rcode != tc.rcode {
				t.Errorf("%s %s (tcp %v): rcode %s, want %s", tc.name, dns.TypeToString[tc.qtype], tcp, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
				continue
			}
			if got := rrStrings(resp.Answer); !slices.Equal(got, tc.answer) {
				t.Errorf("%s %s: answer\n%s\nwant\n%s", tc.name, dns.TypeToString[tc.qtype], strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
			}
			var soa string
			for _, rr := range resp.Ns {
				if s, ok := rr.(*dns.SOA); ok {
					soa = s.Hdr.Name
					if s.Hdr.Ttl > s.Minttl {
						t.Errorf("%s: SOA TTL %d above its MINIMUM %d (RFC 2308 section 3)", tc.name, s.Hdr.Ttl, s.Minttl)
					}
				}
			}
			if soa != tc.soa {
				t.Errorf("%s %s: SOA %q, want %q", tc.name, dns.TypeToString[tc.qtype], soa, tc.soa)
			}
		}
	}
}

func TestResolveInProcess(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	cfg := Config{Addr: "127.0.0.1:0", RootHints: []string{h.servers["root"].addr.String()}, Port: h.port}
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Resolve(context.Background(), "c2.bench.test", dns.TypeA)
	if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 3 {
		t.Fatalf("Resolve: %v %v", m, err)
	}
	m, err = r.Resolve(context.Background(), "lame.test.", dns.TypeA)
	if err == nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("lame: %v %v", m, err)
	}
}
