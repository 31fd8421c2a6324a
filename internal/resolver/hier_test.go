package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// This file is a small authoritative server for the resolver's unit
// tests: enough of RFC 1034 section 4.3.2 (referrals with glue, CNAME
// chasing inside the zone, NXDOMAIN/NODATA with the SOA, empty
// non-terminals, wildcards) on miekg/dns servers, plus hooks to log,
// break and tamper with replies.

// testZone is one zone's records.
type testZone struct {
	apex string
	rrs  map[string][]dns.RR // by canonical owner
}

func parseZone(t testing.TB, apex, text string) *testZone {
	t.Helper()
	z := &testZone{apex: apex, rrs: make(map[string][]dns.RR)}
	zp := dns.NewZoneParser(strings.NewReader(text), apex, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		n := canonical(rr.Header().Name)
		z.rrs[n] = append(z.rrs[n], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone %s: %v", apex, err)
	}
	return z
}

func (z *testZone) get(name string, t uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range z.rrs[name] {
		if rr.Header().Rrtype == t {
			out = append(out, rr)
		}
	}
	return out
}

func (z *testZone) soa() dns.RR { return z.get(z.apex, dns.TypeSOA)[0] }

// exists reports whether name owns records or is an empty non-terminal.
func (z *testZone) exists(name string) bool {
	if len(z.rrs[name]) > 0 {
		return true
	}
	for n := range z.rrs {
		if n != name && isSub(name, n) {
			return true
		}
	}
	return false
}

// answer fills m with the zone's reply to (qname, qtype).
func (z *testZone) answer(m *dns.Msg, qname string, qtype uint16) {
	m.Authoritative = true
	// A cut between the apex and qname gives a referral (DS at the cut
	// itself is answered here, from the parent side).
	for n := labels(z.apex) + 1; n <= labels(qname); n++ {
		cut := ancestorWithLabels(qname, n)
		ns := z.get(cut, dns.TypeNS)
		if len(ns) == 0 || (cut == qname && qtype == dns.TypeDS) {
			continue
		}
		m.Authoritative = false
		m.Ns = append(m.Ns, ns...)
		for _, rr := range ns {
			target := canonical(rr.(*dns.NS).Ns)
			if isSub(z.apex, target) {
				m.Extra = append(m.Extra, z.get(target, dns.TypeA)...)
				m.Extra = append(m.Extra, z.get(target, dns.TypeAAAA)...)
			}
		}
		return
	}
	name := qname
	for range 8 {
		rrs := z.rrs[name]
		if len(rrs) == 0 && !z.exists(name) {
			// Wildcard at the closest encloser.
			enc := name
			for !z.exists(enc) && enc != z.apex {
				enc = ancestorWithLabels(enc, labels(enc)-1)
			}
			wild := "*." + enc
			if enc == "." {
				wild = "*."
			}
			if w := z.rrs[wild]; len(w) > 0 {
				for _, rr := range w {
					c := dns.Copy(rr)
					c.Header().Name = name
					rrs = append(rrs, c)
				}
			}
		}
		if len(rrs) == 0 {
			if !z.exists(name) {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = append(m.Ns, z.soa())
			return
		}
		var match []dns.RR
		var cname dns.RR
		for _, rr := range rrs {
			switch rr.Header().Rrtype {
			case qtype:
				match = append(match, rr)
			case dns.TypeCNAME:
				cname = rr
			}
		}
		if len(match) > 0 {
			m.Answer = append(m.Answer, match...)
			return
		}
		if cname == nil {
			m.Ns = append(m.Ns, z.soa())
			return
		}
		m.Answer = append(m.Answer, cname)
		name = canonical(cname.(*dns.CNAME).Target)
		if !isSub(z.apex, name) {
			return
		}
	}
}

// testServer is an authoritative server on one loopback address, UDP and
// TCP, serving some zones.
type testServer struct {
	addr  netip.AddrPort
	zones []*testZone
	udp   *dns.Server
	tcp   *dns.Server

	mu       sync.Mutex
	log      []logged
	mute     atomic.Bool // drop every query (a dead server)
	tcLimit  atomic.Int32
	tamperFn atomic.Pointer[func(req, resp *dns.Msg)]
	stopOnce sync.Once
}

// logged is one query a test server received.
type logged struct {
	q     dns.Question
	id    uint16
	port  int
	tcp   bool
	rd    bool
	edns  bool
	local string
}

func (s *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	tcp := w.LocalAddr().Network() == "tcp"
	ra, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	if len(req.Question) == 1 {
		s.mu.Lock()
		s.log = append(s.log, logged{q: req.Question[0], id: req.Id, port: int(ra.Port()), tcp: tcp,
			rd: req.RecursionDesired, edns: req.IsEdns0() != nil})
		s.mu.Unlock()
	}
	if s.mute.Load() {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionDesired = false
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	qname := canonical(q.Name)
	var best *testZone
	for _, z := range s.zones {
		if isSub(z.apex, qname) && (best == nil || labels(z.apex) > labels(best.apex)) {
			best = z
		}
	}
	if best == nil {
		m.Rcode = dns.RcodeRefused
	} else {
		best.answer(m, qname, q.Qtype)
	}
	if f := s.tamperFn.Load(); f != nil {
		(*f)(req, m)
	}
	if lim := int(s.tcLimit.Load()); !tcp && lim > 0 {
		if b, _ := m.Pack(); len(b) > lim {
			m.Answer, m.Ns, m.Extra = nil, nil, nil
			m.Truncated = true
		}
	}
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(1232, false)
	}
	w.WriteMsg(m)
}

// tamper installs f to rewrite every reply before it is sent.
func (s *testServer) tamper(f func(req, resp *dns.Msg)) { s.tamperFn.Store(&f) }

// queries returns the questions received so far and clears the log.
func (s *testServer) queries() []logged {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log
	s.log = nil
	return l
}

func (s *testServer) names() []string {
	var out []string
	for _, l := range s.queries() {
		out = append(out, canonical(l.q.Name)+"/"+dns.TypeToString[l.q.Qtype])
	}
	return out
}

func (s *testServer) start(t testing.TB) {
	t.Helper()
	udp, err := net.ListenPacket("udp", s.addr.String())
	if err != nil {
		t.Fatalf("listen udp %s: %v", s.addr, err)
	}
	tcp, err := net.Listen("tcp", s.addr.String())
	if err != nil {
		udp.Close()
		t.Fatalf("listen tcp %s: %v", s.addr, err)
	}
	s.udp = &dns.Server{PacketConn: udp, Handler: s}
	s.tcp = &dns.Server{Listener: tcp, Handler: s}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	s.stopOnce = sync.Once{}
	t.Cleanup(s.stop)
}

func (s *testServer) stop() {
	s.stopOnce.Do(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
}

// hierarchy is a root → TLD → zones tree of test servers, each on its own
// 127.0.0.x address, all on one port.
type hierarchy struct {
	port    int
	servers map[string]*testServer // by name given in the layout
}

// hierarchyLayout maps a server name to its last address octet and the
// zones (apex → text) it serves.
type serverSpec struct {
	octet int
	zones map[string]string
}

// startHierarchy starts the servers of layout on 127.0.0.<octet>:port for
// a port free on all of them. Zone texts may use {{.n}} for
// "127.0.0.<n>" by writing ADDR(n).
func startHierarchy(t testing.TB, base int, layout map[string]serverSpec) *hierarchy {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		port := 20000 + rand.IntN(40000)
		free := true
		for _, s := range layout {
			ip := fmt.Sprintf("127.0.%d.%d", base, s.octet)
			if !portFree(ip, port) {
				free = false
				break
			}
		}
		if !free {
			continue
		}
		h := &hierarchy{port: port, servers: make(map[string]*testServer)}
		for name, spec := range layout {
			ip := netip.MustParseAddr(fmt.Sprintf("127.0.%d.%d", base, spec.octet))
			s := &testServer{addr: netip.AddrPortFrom(ip, uint16(port))}
			for apex, text := range spec.zones {
				s.zones = append(s.zones, parseZone(t, apex, expandAddrs(text, base)))
			}
			s.start(t)
			h.servers[name] = s
		}
		return h
	}
	t.Fatal("no port free on every test server address")
	return nil
}

// expandAddrs replaces ADDR(n) with 127.0.<base>.<n>.
func expandAddrs(text string, base int) string {
	var b strings.Builder
	for {
		i := strings.Index(text, "ADDR(")
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		j := strings.Index(text[i:], ")")
		b.WriteString(text[:i])
		fmt.Fprintf(&b, "127.0.%d.%s", base, text[i+5:i+j])
		text = text[i+j+1:]
	}
}

func portFree(ip string, port int) bool {
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// testBase hands each test its own 127.0.<base>.0/24 so that tests may
// run in parallel.
var testBase atomic.Int32

func nextBase() int { return int(testBase.Add(1)%200) + 30 }

// standardLayout is the hierarchy most tests use.
func standardLayout() map[string]serverSpec {
	return map[string]serverSpec{
		"root": {11, map[string]string{".": `
. 86400 IN SOA a.root. hostmaster.root. 1 7200 3600 1209600 300
. 86400 IN NS a.root.
a.root. 86400 IN A ADDR(11)
test. 86400 IN NS ns1.nic.test.
ns1.nic.test. 86400 IN A ADDR(12)
example. 86400 IN NS ns.example-ns.test.
`}},
		"tld": {12, map[string]string{"test.": `
test. 3600 IN SOA ns1.nic.test. hostmaster.nic.test. 1 7200 3600 1209600 600
test. 3600 IN NS ns1.nic.test.
ns1.nic.test. 3600 IN A ADDR(12)
bench.test. 3600 IN NS ns1.bench.test.
ns1.bench.test. 3600 IN A ADDR(13)
ns.example-ns.test. 3600 IN A ADDR(14)
lame.test. 3600 IN NS ns.lame.test.
ns.lame.test. 3600 IN A ADDR(99)
`}},
		"auth": {13, map[string]string{"bench.test.": `
bench.test. 3600 IN SOA ns1.bench.test. hostmaster.bench.test. 2024010101 7200 3600 1209600 300
bench.test. 3600 IN NS ns1.bench.test.
ns1.bench.test. 3600 IN A ADDR(13)
h1 300 IN A 10.0.0.1
h2 300 IN A 10.0.0.2
h2 300 IN A 10.0.0.3
h2 300 IN AAAA fd00::2
c1 300 IN CNAME h1
c2 300 IN CNAME c1
ext 300 IN CNAME www.example.
short 2 IN A 10.0.0.9
t1 300 IN TXT "hello"
a.b.ent 300 IN A 10.0.0.4
*.wild 300 IN A 10.0.0.5
loop1 300 IN CNAME loop2
loop2 300 IN CNAME loop1
sub 3600 IN NS ns.sub
ns.sub 3600 IN A ADDR(15)
`}},
		"sub": {15, map[string]string{"sub.bench.test.": `
sub.bench.test. 3600 IN SOA ns.sub.bench.test. hostmaster.sub.bench.test. 1 7200 3600 1209600 120
sub.bench.test. 3600 IN NS ns.sub.bench.test.
ns.sub.bench.test. 3600 IN A ADDR(15)
x 300 IN A 10.1.0.1
`}},
		"example": {14, map[string]string{"example.": `
example. 3600 IN SOA ns.example-ns.test. hostmaster.example. 1 7200 3600 1209600 60
example. 3600 IN NS ns.example-ns.test.
www 300 IN A 192.0.2.80
`}},
	}
}

// newTestResolver starts a resolver for h with the given changes to its
// config.
func newTestResolver(t testing.TB, h *hierarchy, base int, mutate func(*Config)) *Resolver {
	t.Helper()
	cfg := Config{
		Addr:         "127.0.0.1:0",
		RootHints:    []string{fmt.Sprintf("127.0.%d.11:%d", base, h.port)},
		Port:         h.port,
		QueryTimeout: 300 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return r
}
