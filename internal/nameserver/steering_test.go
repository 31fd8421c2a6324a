package nameserver

import (
	"encoding/json"
	"math"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustRegions(t testing.TB, entries ...string) *RegionMap {
	t.Helper()
	m, err := NewRegionMap(entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHealthFlip stops a gateway's health endpoint: it leaves the answers
// once its checks fail, and comes back when healthy again. Health rounds,
// not the clock, decide when to look; the measured time is logged and the
// configured worst case (MaxDetection) must be within 2 s.
func TestHealthFlip(t *testing.T) {
	g1, g2, g3 := newHealthTarget(t), newHealthTarget(t), newHealthTarget(t)
	health := HealthConfig{Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, UnhealthyAfter: 2, HealthyAfter: 2}
	if d := health.MaxDetection(); d > 2*time.Second {
		t.Fatalf("configured detection bound %v > 2s", d)
	}
	if d := (HealthConfig{}).MaxDetection(); d > 2*time.Second {
		t.Fatalf("default detection bound %v > 2s", d)
	}
	s := startServer(t, Config{
		Health: health,
		Zones: []ZoneConfig{{Origin: "example.test.", Text: testZoneText, Pools: []PoolConfig{{
			Name: "gw", TTL: 1, Policy: PolicyAll,
			Targets: []Target{
				{ID: "gateway-1", Addr: netip.MustParseAddr("192.0.2.11"), Health: g1.url()},
				{ID: "gateway-2", Addr: netip.MustParseAddr("192.0.2.12"), Health: g2.url()},
				{ID: "gateway-3", Addr: netip.MustParseAddr("192.0.2.13"), Health: "tcp://" + strings.TrimPrefix(g3.srv.URL, "http://")},
			},
		}}}},
	})
	answer := func() []string {
		a := addrs(query(t, s.Addr(), "gw.example.test", dns.TypeA))
		slices.Sort(a)
		return a
	}
	if got := answer(); !slices.Equal(got, []string{"192.0.2.11", "192.0.2.12", "192.0.2.13"}) {
		t.Fatalf("all healthy: %v", got)
	}
	serial0, _ := s.Serial("example.test.")

	// Stop gateway-2's listener entirely (connection refused).
	stopped := time.Now()
	g2.srv.Close()
	waitRounds(t, s.Server, uint64(health.UnhealthyAfter)+1)
	if got := answer(); !slices.Equal(got, []string{"192.0.2.11", "192.0.2.13"}) {
		t.Fatalf("gateway-2 stopped: %v", got)
	}
	t.Logf("stopped gateway left the answers within %v (bound %v)", time.Since(stopped).Round(time.Millisecond), health.MaxDetection())
	serial1, _ := s.Serial("example.test.")
	if !serialLess(serial0, serial1) {
		t.Fatalf("serial %d → %d: a health change must move the serial", serial0, serial1)
	}

	// gateway-1 answers 503: out too. Then back.
	g1.down.Store(true)
	waitRounds(t, s.Server, uint64(health.UnhealthyAfter)+1)
	if got := answer(); !slices.Equal(got, []string{"192.0.2.13"}) {
		t.Fatalf("gateway-1 503: %v", got)
	}
	// Explain says why.
	ex, err := s.Explain("gw.example.test", dns.TypeA, "")
	if err != nil {
		t.Fatal(err)
	}
	dropped := map[string]string{}
	for _, c := range ex.Pools[0].Candidates {
		dropped[c.ID] = c.Dropped
		if c.ID == "gateway-1" && !strings.Contains(c.HealthError, "503") {
			t.Errorf("gateway-1 health error %q, want the 503", c.HealthError)
		}
	}
	if dropped["gateway-1"] != "unhealthy" || dropped["gateway-2"] != "unhealthy" || dropped["gateway-3"] != "" {
		t.Fatalf("explain: %+v", ex.Pools[0].Candidates)
	}
	g1.down.Store(false)
	waitRounds(t, s.Server, uint64(health.HealthyAfter)+1)
	if got := answer(); !slices.Equal(got, []string{"192.0.2.11", "192.0.2.13"}) {
		t.Fatalf("gateway-1 back: %v", got)
	}

	// Everything down: fail open with every target.
	g1.down.Store(true)
	g3.srv.Close()
	waitRounds(t, s.Server, uint64(health.UnhealthyAfter)+1)
	if got := answer(); len(got) != 3 {
		t.Fatalf("all down must fail open: %v", got)
	}
}

// TestWeighted checks a 3:1 weighted pool over 10,000 draws is 75% ± 2%.
func TestWeighted(t *testing.T) {
	s := startServer(t, Config{
		Zones: []ZoneConfig{{Origin: "example.test.", Text: testZoneText, Pools: []PoolConfig{{
			Name: "w", Policy: PolicyWeighted, Count: 1,
			Targets: []Target{
				{ID: "heavy", Addr: netip.MustParseAddr("192.0.2.1"), Weight: 3},
				{ID: "light", Addr: netip.MustParseAddr("192.0.2.2"), Weight: 1},
			},
		}}}},
	})
	// Most draws in-process (fast), a sample over the wire.
	zs := s.zones.Load().byOrigin["example.test."]
	p := zs.pools[0]
	heavy := 0
	const n = 10000
	for range n {
		sel := p.choose(dns.TypeA, netip.Addr{}, 0, nil)
		rrs := sel.records("w.example.test.", 5)
		if len(rrs) != 1 {
			t.Fatalf("weighted count 1: %d records", len(rrs))
		}
		if rrs[0].(*dns.A).A.String() == "192.0.2.1" {
			heavy++
		}
	}
	share := float64(heavy) / n
	t.Logf("heavy share %.4f", share)
	if math.Abs(share-0.75) > 0.02 {
		t.Fatalf("3:1 weights gave %.4f, want 0.75 ± 0.02", share)
	}
	seen := map[string]int{}
	for range 200 {
		a := addrs(query(t, s.Addr(), "w.example.test", dns.TypeA))
		if len(a) != 1 {
			t.Fatalf("weighted answer %v", a)
		}
		seen[a[0]]++
	}
	if seen["192.0.2.1"] == 0 || seen["192.0.2.2"] == 0 {
		t.Fatalf("over the wire both targets must appear: %v", seen)
	}
}

// TestECS: two client subnets get two different edges, with the scope of
// the region map entry; no ECS falls back to the source address; the
// scope is 0 for answers that do not depend on the client.
func TestECS(t *testing.T) {
	regions := mustRegions(t,
		"198.51.100.0/24=eu",
		"203.0.113.0/24=us",
		"10.0.0.0/8=eu",
		"10.1.0.0/16=us", // inside 10/8 with a different region
		"127.0.0.0/8=local",
		"2001:db8:e000::/36=eu",
	)
	s := startServer(t, Config{
		Regions: regions,
		Zones: []ZoneConfig{{Origin: "example.test.", Text: testZoneText, Pools: []PoolConfig{{
			Name: "edge", Policy: PolicyGeo, TTL: 20,
			Targets: []Target{
				{ID: "edge-eu", Addr: netip.MustParseAddr("192.0.2.101"), Region: "eu"},
				{ID: "edge-us", Addr: netip.MustParseAddr("192.0.2.102"), Region: "us"},
				{ID: "edge-local", Addr: netip.MustParseAddr("192.0.2.103"), Region: "local"},
				{ID: "edge-eu6", Addr: netip.MustParseAddr("2001:db8::101"), Region: "eu"},
			},
		}}}},
	})
	for _, c := range []struct {
		subnet string
		want   string
		scope  uint8
	}{
		{"198.51.100.0/24", "192.0.2.101", 24},
		{"203.0.113.0/24", "192.0.2.102", 24},
		{"198.51.100.128/25", "192.0.2.101", 24}, // more specific than the entry: scope /24
		{"10.2.3.0/24", "192.0.2.101", 15},       // in 10/8; 10.2/15 keeps 10.1/16 outside the scope
		{"10.1.2.0/24", "192.0.2.102", 16},
		{"10.0.0.0/8", "192.0.2.101", 16}, // too coarse to decide: scope longer than source
		{"192.0.2.0/24", "", 0},           // no region: any edge, by weight
		{"2001:db8:e123::/48", "2001:db8::101", 36},
	} {
		qtype := dns.TypeA
		if strings.Contains(c.subnet, ":") {
			qtype = dns.TypeAAAA
		}
		r := query(t, s.Addr(), "edge.example.test", qtype, withECS(c.subnet))
		got := addrs(r)
		if len(got) != 1 || (c.want != "" && got[0] != c.want) {
			t.Fatalf("subnet %s: answer %v, want %s", c.subnet, got, c.want)
		}
		e := replyECS(r)
		if e == nil {
			t.Fatalf("subnet %s: no ECS in the reply", c.subnet)
		}
		p := netip.MustParsePrefix(c.subnet)
		if e.SourceNetmask != uint8(p.Bits()) || !netip.MustParseAddr(e.Address.String()).Unmap().Is4() == p.Addr().Is4() {
			t.Fatalf("subnet %s: reply ECS %v does not echo the query", c.subnet, e)
		}
		if c.want != "" && e.SourceScope != c.scope {
			t.Fatalf("subnet %s: scope /%d, want /%d", c.subnet, e.SourceScope, c.scope)
		}
	}
	// Without ECS the source address (127.0.0.1, region "local") decides.
	r := query(t, s.Addr(), "edge.example.test", dns.TypeA)
	if got := addrs(r); len(got) != 1 || got[0] != "192.0.2.103" {
		t.Fatalf("no ECS from 127.0.0.1: %v", got)
	}
	if replyECS(r) != nil {
		t.Fatal("ECS in the reply to a query without it")
	}
	// A static answer with ECS: scope 0 (valid for everyone).
	r = query(t, s.Addr(), "www.example.test", dns.TypeA, withECS("198.51.100.0/24"))
	if e := replyECS(r); e == nil || e.SourceScope != 0 {
		t.Fatalf("static answer ECS %v, want scope 0", e)
	}
	// ECS source /0 (the client opts out): the resolver's address decides, scope 0.
	r = query(t, s.Addr(), "edge.example.test", dns.TypeA, withECS("0.0.0.0/0"))
	if e := replyECS(r); e == nil || e.SourceScope != 0 || addrs(r)[0] != "192.0.2.103" {
		t.Fatalf("ECS /0: %v %v", addrs(r), e)
	}
}

func TestRegionMapScope(t *testing.T) {
	m := mustRegions(t, "10.0.0.0/8=a", "10.1.0.0/16=b", "10.1.1.0/24=a", "172.16.0.0/12=c")
	for _, c := range []struct {
		addr   string
		bits   int
		region string
		scope  int
	}{
		{"10.200.0.0", 16, "a", 9}, // 10.128/9 holds no other region's entry
		{"10.128.0.0", 16, "a", 9},
		{"10.2.0.0", 16, "a", 15},   // 10.2/15 excludes 10.1/16
		{"10.1.2.0", 24, "b", 23},   // 10.1.2/23 excludes 10.1.1/24 (region a)
		{"10.1.128.0", 24, "b", 17}, // differs from 10.1.1/24 at bit 16
		{"10.1.1.0", 24, "a", 24},   // exact
		{"172.20.0.0", 24, "c", 12}, // nothing inside
		{"192.168.0.0", 24, "", 2},  // unmatched: 192/2 holds no entry (172 = 1010…, 192 = 1100…)
		{"10.0.0.0", 8, "a", 16},    // too coarse: 10.1/16 overlaps it
		{"10.1.1.77", 32, "a", 24},
	} {
		region, _, scope := m.Lookup(netip.MustParseAddr(c.addr), c.bits)
		if region != c.region || scope != c.scope {
			t.Errorf("%s/%d: region %q scope %d, want %q %d", c.addr, c.bits, region, scope, c.region, c.scope)
		}
	}
}

// TestRRL limits identical responses to one network and slips every
// second limited one as a truncated reply.
func TestRRL(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	s := startServer(t, Config{RRL: RRLConfig{Rate: 5, Burst: 5, Slip: 2}}, func(s *Server) {
		s.rrl.now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	answered, slipped, dropped := 0, 0, 0
	for range 20 {
		m := new(dns.Msg)
		m.SetQuestion("www.example.test.", dns.TypeA)
		r, _, err := c.Exchange(m, s.Addr())
		switch {
		case err != nil:
			dropped++
		case r.Truncated && len(r.Answer) == 0:
			slipped++
		default:
			answered++
		}
	}
	if answered != 5 || slipped != 7 || dropped != 8 {
		t.Fatalf("answered %d slipped %d dropped %d, want 5, 7, 8", answered, slipped, dropped)
	}
	// Another name is another bucket; TCP is never limited.
	if r := query(t, s.Addr(), "mx.example.test", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("other name limited: %v", r)
	}
	tc := &dns.Client{Net: "tcp", Timeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	if r, _, err := tc.Exchange(m, s.Addr()); err != nil || len(r.Answer) != 2 {
		t.Fatalf("TCP limited: %v %v", r, err)
	}
	// One second later five more tokens.
	now.Add(int64(time.Second))
	if r := query(t, s.Addr(), "www.example.test", dns.TypeA); len(r.Answer) != 2 {
		t.Fatalf("after refill: %v", r)
	}
}

func TestExplainHandler(t *testing.T) {
	s := startServer(t, Config{
		Regions: mustRegions(t, "198.51.100.0/24=eu", "203.0.113.0/24=us"),
		Zones: []ZoneConfig{{Origin: "example.test.", Text: testZoneText, Pools: []PoolConfig{{
			Name: "edge", Policy: PolicyGeo,
			Targets: []Target{
				{ID: "edge-eu", Addr: netip.MustParseAddr("192.0.2.101"), Region: "eu"},
				{ID: "edge-us", Addr: netip.MustParseAddr("192.0.2.102"), Region: "us"},
			},
		}}}},
	})
	h := s.ExplainHandler()
	get := func(q string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/dns/explain?"+q, nil))
		var v map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s: body %q: %v", q, rec.Body, err)
		}
		return rec.Code, v
	}
	code, v := get("name=edge.example.test&type=A&client=203.0.113.0/24")
	if code != 200 {
		t.Fatalf("status %d: %v", code, v)
	}
	pool := v["pools"].([]any)[0].(map[string]any)
	if pool["region"] != "us" || pool["matched_prefix"] != "203.0.113.0/24" || v["ecs_scope"].(float64) != 24 {
		t.Fatalf("explain: %v", v)
	}
	cands := pool["candidates"].([]any)
	first := cands[0].(map[string]any)
	second := cands[1].(map[string]any)
	if first["id"] != "edge-us" || first["chosen"] != true || second["dropped"] != "other region" {
		t.Fatalf("candidates: %v", cands)
	}
	if !strings.Contains(v["answer"].([]any)[0].(string), "192.0.2.102") {
		t.Fatalf("answer: %v", v["answer"])
	}
	code, v = get("name=nx.example.test")
	if code != 200 || v["rcode"] != "NXDOMAIN" {
		t.Fatalf("NXDOMAIN explain: %d %v", code, v)
	}
	for _, bad := range []string{"", "name=a..b", "name=x.example.test&type=NOPE", "name=x.example.test&client=nonsense", "name=x.example.test&client=1.2.3.4/99", "name=x.example.test&type=AXFR"} {
		if code, v := get(bad); code != 400 || v["error"] == "" {
			t.Errorf("%q: status %d %v, want 400 with a reason", bad, code, v)
		}
	}
}
