package resolver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// clock is a settable time source for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestNegativeCaching(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	clk := newClock()
	r := newTestResolver(t, h, base, func(c *Config) { c.Now = clk.now })
	auth := h.servers["auth"]

	resp := ask(t, r, "nx1.bench.test.", dns.TypeA, false)
	if resp.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %s", dns.RcodeToString[resp.Rcode])
	}
	soa := resp.Ns[0].(*dns.SOA)
	if soa.Hdr.Ttl != 300 { // min(SOA TTL 3600, MINIMUM 300)
		t.Fatalf("negative TTL %d, want 300", soa.Hdr.Ttl)
	}
	auth.queries()
	// The NXDOMAIN covers every type of the name (RFC 2308 section 5).
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
		clk.advance(50 * time.Second)
		resp = ask(t, r, "nx1.bench.test.", qt, false)
		if resp.Rcode != dns.RcodeNameError {
			t.Fatalf("%s: rcode %s", dns.TypeToString[qt], dns.RcodeToString[resp.Rcode])
		}
	}
	if q := auth.queries(); len(q) != 0 {
		t.Fatalf("auth re-queried within the negative TTL: %v", q)
	}
	if ttl := resp.Ns[0].Header().Ttl; ttl != 150 {
		t.Errorf("negative TTL after 150 s: %d, want 150", ttl)
	}
	// NODATA is cached per type.
	ask(t, r, "h1.bench.test.", dns.TypeMX, false)
	auth.queries()
	ask(t, r, "h1.bench.test.", dns.TypeMX, false)
	if q := auth.queries(); len(q) != 0 {
		t.Fatalf("NODATA not cached: %v", q)
	}
	// After the TTL the next query goes upstream again.
	clk.advance(151 * time.Second)
	ask(t, r, "nx1.bench.test.", dns.TypeA, false)
	if got := auth.names(); !slices.Equal(got, []string{"nx1.bench.test./A"}) {
		t.Fatalf("after expiry auth saw %v", got)
	}
}

func TestServeStaleOnlyAfterFailedRefresh(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	clk := newClock()
	r := newTestResolver(t, h, base, func(c *Config) { c.Now = clk.now; c.StaleRecheck = 10 * time.Second })
	auth := h.servers["auth"]

	if resp := ask(t, r, "h1.bench.test.", dns.TypeA, false); len(resp.Answer) != 1 {
		t.Fatalf("priming: %v", resp)
	}
	auth.queries()
	// Expired while the server is up: refreshed, never stale.
	clk.advance(301 * time.Second)
	resp := ask(t, r, "h1.bench.test.", dns.TypeA, false)
	if ttl := resp.Answer[0].Header().Ttl; ttl != 300 {
		t.Fatalf("refreshed answer TTL %d, want 300", ttl)
	}
	if got := auth.names(); !slices.Equal(got, []string{"h1.bench.test./A"}) {
		t.Fatalf("refresh: auth saw %v", got)
	}
	// The server dies; the answer expires: a refresh is tried, fails, and
	// the stale answer is served with TTL 30 (RFC 8767).
	auth.mute.Store(true)
	clk.advance(301 * time.Second)
	resp = ask(t, r, "h1.bench.test.", dns.TypeA, false)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 {
		t.Fatalf("stale answer: %v", resp)
	}
	if n := len(auth.queries()); n == 0 {
		t.Fatal("stale served without a refresh attempt")
	}
	// Within the failure recheck window: stale at once, no new attempt.
	clk.advance(5 * time.Second)
	resp = ask(t, r, "h1.bench.test.", dns.TypeA, false)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 {
		t.Fatalf("stale answer in recheck window: %v", resp)
	}
	if q := auth.queries(); len(q) != 0 {
		t.Fatalf("refresh retried inside the recheck window: %v", q)
	}
	// The server comes back: after the window, a fresh answer.
	auth.mute.Store(false)
	clk.advance(6 * time.Second)
	resp = ask(t, r, "h1.bench.test.", dns.TypeA, false)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 300 {
		t.Fatalf("fresh answer after recovery: %v", resp)
	}
	// A name never cached gets SERVFAIL while its server is down.
	auth.mute.Store(true)
	if resp := ask(t, r, "h2.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("uncached name with dead server: %s", dns.RcodeToString[resp.Rcode])
	}
}

func TestServeStaleDisabled(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	clk := newClock()
	r := newTestResolver(t, h, base, func(c *Config) { c.Now = clk.now; c.StaleWindow = -1 })
	ask(t, r, "h1.bench.test.", dns.TypeA, false)
	h.servers["auth"].mute.Store(true)
	clk.advance(301 * time.Second)
	if resp := ask(t, r, "h1.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

func TestTruncationRetriesOverTCP(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, nil)
	auth := h.servers["auth"]
	auth.tcLimit.Store(60) // every UDP answer of auth is truncated
	resp := ask(t, r, "h2.bench.test.", dns.TypeA, false)
	if len(resp.Answer) != 2 {
		t.Fatalf("answer %v", resp.Answer)
	}
	var udp, tcp int
	for _, l := range auth.queries() {
		if l.tcp {
			tcp++
		} else {
			udp++
		}
	}
	if udp != 1 || tcp != 1 {
		t.Fatalf("auth saw %d UDP and %d TCP queries, want 1 and 1", udp, tcp)
	}
}

func TestTruncatesLargeRepliesToClients(t *testing.T) {
	base := nextBase()
	layout := standardLayout()
	text := layout["auth"].zones["bench.test."]
	for i := range 60 {
		text += "big 300 IN TXT \"" + string(rune('a'+i%26)) + "-0123456789012345678901234567890123456789\"\n"
	}
	layout["auth"].zones["bench.test."] = text
	h := startHierarchy(t, base, layout)
	r := newTestResolver(t, h, base, nil)
	m := new(dns.Msg)
	m.SetQuestion("big.bench.test.", dns.TypeTXT)
	c := &dns.Client{Timeout: 5 * time.Second, UDPSize: 512}
	resp, _, err := c.Exchange(m, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Truncated {
		t.Fatalf("no TC on a %d-record answer to a 512-byte client", len(resp.Answer))
	}
	if resp := ask(t, r, "big.bench.test.", dns.TypeTXT, true); resp.Truncated || len(resp.Answer) != 60 {
		t.Fatalf("over TCP: TC %v, %d records", resp.Truncated, len(resp.Answer))
	}
}

func TestRandomIDsAndPorts(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, nil)
	for i := range 20 {
		ask(t, r, "n"+string(rune('a'+i))+".bench.test.", dns.TypeA, false)
	}
	ids, ports := map[uint16]bool{}, map[int]bool{}
	for _, l := range h.servers["auth"].queries() {
		ids[l.id] = true
		ports[l.port] = true
		if l.rd {
			t.Error("upstream query with RD set")
		}
		if !l.edns {
			t.Error("upstream query without EDNS")
		}
	}
	// 20 draws from 2^16 IDs and ~28000 ports: a repeat is possible but
	// unlikely; a constant is a bug.
	if len(ids) < 15 || len(ports) < 15 {
		t.Fatalf("%d distinct IDs and %d distinct ports in 20 queries", len(ids), len(ports))
	}
}

func TestBailiwick(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	// The bench.test server lies about names it has no authority for.
	h.servers["auth"].tamper(func(req, resp *dns.Msg) {
		resp.Answer = append(resp.Answer, mustRR(t, "www.example. 300 IN A 6.6.6.6"))
		resp.Ns = append(resp.Ns, mustRR(t, "example. 300 IN NS ns.evil.bench.test."))
		resp.Extra = append(resp.Extra, mustRR(t, "ns.example-ns.test. 300 IN A 6.6.6.6"),
			mustRR(t, "ns1.nic.test. 300 IN A 6.6.6.6"))
	})
	r := newTestResolver(t, h, base, nil)
	if resp := ask(t, r, "h1.bench.test.", dns.TypeA, false); len(resp.Answer) != 1 {
		t.Fatalf("answer kept foreign records: %v", resp.Answer)
	}
	resp := ask(t, r, "www.example.", dns.TypeA, false)
	if got := rrStrings(resp.Answer); !slices.Equal(got, []string{"www.example.\t0\tIN\tA\t192.0.2.80"}) {
		t.Fatalf("www.example: %v", got)
	}
	if len(h.servers["example"].queries()) == 0 {
		t.Fatal("the real example. server was never asked")
	}
	// An upward referral from the TLD (a lame server) is not followed.
	h.servers["tld"].tamper(func(req, resp *dns.Msg) {
		if canonical(req.Question[0].Name) == "up.test." {
			resp.Rcode = dns.RcodeSuccess
			resp.Authoritative = false
			resp.Ns = []dns.RR{mustRR(t, ". 300 IN NS a.root.")}
		}
	})
	if resp := ask(t, r, "up.test.", dns.TypeA, false); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("upward referral: %s", dns.RcodeToString[resp.Rcode])
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func TestLimits(t *testing.T) {
	base := nextBase()
	layout := standardLayout()
	// A chain of zones z1 > z2 > z3 > z4 below bench.test, alternating
	// between two servers, each delegating to the next with glue.
	layout["auth"].zones["bench.test."] += "z1 300 IN NS ns.z1\nns.z1 300 IN A ADDR(20)\n"
	servers := map[int]serverSpec{20: {20, map[string]string{}}, 21: {21, map[string]string{}}}
	name := "z1.bench.test."
	for i := 1; i <= 4; i++ {
		child := fmt.Sprintf("z%d.%s", i+1, name)
		octet := 20 + (i+1)%2
		servers[octet].zones[name] = fmt.Sprintf(`
%[1]s 300 IN SOA ns.%[1]s h. 1 1 1 1 60
%[1]s 300 IN NS ns.%[1]s
ns.%[1]s 300 IN A ADDR(%[3]d)
%[2]s 300 IN NS ns.%[2]s
ns.%[2]s 300 IN A ADDR(%[4]d)
`, name, child, octet, 20+i%2)
		name = child
	}
	layout["z-even"], layout["z-odd"] = servers[20], servers[21]
	h := startHierarchy(t, base, layout)
	r := newTestResolver(t, h, base, func(c *Config) { c.MaxReferrals = 3 })
	// root → test → bench.test → z1 → z2: the fourth referral is over.
	if resp := ask(t, r, "a.z3.z2.z1.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("referral limit: %s", dns.RcodeToString[resp.Rcode])
	}
	if v := counterValue(r.met.limits.WithLabelValues("referrals")); v != 1 {
		t.Errorf("referral limit hits %v, want 1", v)
	}
	// Within the default limit the same name resolves (NXDOMAIN in z3).
	if resp := ask(t, newTestResolver(t, h, base, nil), "a.z3.z2.z1.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("five referrals with the default limit: %s", dns.RcodeToString[resp.Rcode])
	}
	r2 := newTestResolver(t, h, base, func(c *Config) { c.MaxQueriesPerRequest = 2 })
	if resp := ask(t, r2, "h1.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("query budget: %s", dns.RcodeToString[resp.Rcode])
	}
	if v := counterValue(r2.met.limits.WithLabelValues("queries")); v < 1 {
		t.Errorf("query limit hits %v", v)
	}
	r3 := newTestResolver(t, h, base, func(c *Config) { c.MaxCNAMEs = 1 })
	if resp := ask(t, r3, "c2.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("in-zone chain of 2 is one piece: %s", dns.RcodeToString[resp.Rcode])
	}
}

func TestMalformedPacketsDoNotStopTheServer(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, nil)
	conn, err := net.Dial("udp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := new(dns.Msg)
	good.SetQuestion("h1.bench.test.", dns.TypeA)
	wire, _ := good.Pack()
	junk := [][]byte{
		{}, {0}, make([]byte, 11), make([]byte, 12),
		{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0},                        // a response
		{0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63},                       // question cut short
		append(append([]byte{}, wire[:12]...), 0xC0, 0x0C, 0, 1, 0, 1), // pointer loop in question
		append(append([]byte{}, wire...), 0xFF, 0xFF),                  // trailing junk
	}
	for _, j := range junk {
		conn.Write(j)
	}
	// FORMERR for a readable header with a broken question.
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write([]byte{0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'})
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no FORMERR reply: %v", err)
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) == nil && m.Id == 9 {
			if m.Rcode != dns.RcodeFormatError {
				t.Fatalf("rcode %s, want FORMERR", dns.RcodeToString[m.Rcode])
			}
			break
		}
	}
	if resp := ask(t, r, "h1.bench.test.", dns.TypeA, false); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("server unusable after junk: %v", resp)
	}
	// Same over TCP: a garbage frame, then a good query on a new connection.
	tc, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte{0, 3, 1, 2, 3})
	tc.Close()
	if resp := ask(t, r, "h1.bench.test.", dns.TypeA, true); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("TCP unusable after junk: %v", resp)
	}
}

func TestClientErrors(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	r := newTestResolver(t, h, base, nil)
	c := &dns.Client{Timeout: 3 * time.Second}
	check := func(m *dns.Msg, want int) {
		t.Helper()
		resp, _, err := c.Exchange(m, r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rcode != want {
			t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[want])
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("h1.bench.test.", dns.TypeAXFR)
	check(m, dns.RcodeRefused)
	m = new(dns.Msg)
	m.SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	check(m, dns.RcodeRefused)
	m = new(dns.Msg)
	m.SetQuestion("h1.bench.test.", dns.TypeA)
	m.Opcode = dns.OpcodeNotify
	check(m, dns.RcodeNotImplemented)
	m = new(dns.Msg)
	m.SetQuestion("h1.bench.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	check(m, dns.RcodeBadVers)
}

func TestMetrics(t *testing.T) {
	base := nextBase()
	h := startHierarchy(t, base, standardLayout())
	reg := prometheus.NewRegistry()
	cfg := Config{Addr: "127.0.0.1:0", RootHints: []string{h.servers["root"].addr.String()}, Port: h.port}
	r, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(context.Background())
	ask(t, r, "h1.bench.test.", dns.TypeA, false)
	ask(t, r, "h1.bench.test.", dns.TypeA, false)
	ask(t, r, "nx.bench.test.", dns.TypeA, false)
	if v := counterValue(r.met.queries.WithLabelValues("A", "NOERROR")); v != 2 {
		t.Errorf("A/NOERROR queries %v, want 2", v)
	}
	if v := counterValue(r.met.queries.WithLabelValues("A", "NXDOMAIN")); v != 1 {
		t.Errorf("A/NXDOMAIN queries %v, want 1", v)
	}
	if hit, miss := counterValue(r.met.cache.WithLabelValues("hit")), counterValue(r.met.cache.WithLabelValues("miss")); hit != 1 || miss != 2 {
		t.Errorf("cache hit %v miss %v, want 1 and 2", hit, miss)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	// A second resolver on the same registry cannot start while the first
	// runs, and can once it stopped (a retry after a failed Start).
	r2, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Start(context.Background()); err == nil {
		t.Error("second registration on one registry did not fail")
	}
	if r2.Addr() != "" {
		t.Error("failed Start left the resolver listening")
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r2.Start(context.Background()); err != nil {
		t.Fatalf("start after the first stopped: %v", err)
	}
	r2.Stop(context.Background())
}

func TestConfigValidation(t *testing.T) {
	bad := []Config{
		{Addr: "nope", RootHints: []string{"127.0.0.1:53"}},
		{Addr: "127.0.0.1:0"},
		{Addr: "127.0.0.1:0", RootHints: []string{"a.root:53"}},
		{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1:53"}, Port: 70000},
		{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1:53"}, ServerPorts: map[string]int{"x": 53}},
		{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1:53"}, UDPSize: 100},
		{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1:53"}, MaxCNAMEs: -1},
	}
	for _, c := range bad {
		if _, err := New(c, nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	r, err := New(Config{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.root.servers[0].Port() != 53 {
		t.Errorf("root hint without port: %v", r.root.servers[0])
	}
	if r.Addr() != "" {
		t.Error("Addr before Start")
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
}

func TestGluelessLoop(t *testing.T) {
	base := nextBase()
	layout := standardLayout()
	// Each zone's name server lives in the other zone, with no glue.
	layout["root"].zones["."] += "loopa. 300 IN NS ns.loopb.\nloopb. 300 IN NS ns.loopa.\n"
	h := startHierarchy(t, base, layout)
	r := newTestResolver(t, h, base, nil)
	start := time.Now()
	if resp := ask(t, r, "www.loopa.", dns.TypeA, false); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	if n := len(h.servers["root"].queries()); n > 10 {
		t.Errorf("%d queries to the root for a glue-less loop", n)
	}
	t.Logf("loop detected after %s", time.Since(start))
	// The failure is remembered (RFC 9520): no new upstream query.
	ask(t, r, "www.loopa.", dns.TypeA, false)
	if n := len(h.servers["root"].queries()); n != 0 {
		t.Errorf("%d root queries for a remembered failure", n)
	}
}
