package nameserver

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fuzzServer is a server with the test zone, a geo pool and RRL, not
// listening: the fuzz targets call its query path directly.
func fuzzServer(t testing.TB) *Server {
	regions, err := NewRegionMap([]string{"198.51.100.0/24=eu", "10.0.0.0/8=us", "2001:db8::/32=eu"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Addr: "127.0.0.1:0", Regions: regions, RRL: RRLConfig{Rate: 1000},
		Zones: []ZoneConfig{{Origin: "example.test.", Text: testZoneText, Pools: []PoolConfig{{
			Name: "edge", Policy: PolicyGeo, Targets: []Target{
				{ID: "eu", Addr: netip.MustParseAddr("192.0.2.1"), Region: "eu"},
				{ID: "us", Addr: netip.MustParseAddr("192.0.2.2"), Region: "us"},
				{ID: "v6", Addr: netip.MustParseAddr("2001:db8::1"), Region: "eu"},
			},
		}}}},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzQuery feeds arbitrary packets through the UDP query path: parse,
// answer, rate limit, truncate, pack. It must never panic, and a reply
// must carry the query's ID and fit the client's buffer.
func FuzzQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		ecs   string
	}{
		{"www.example.test.", dns.TypeA, ""}, {"edge.example.test.", dns.TypeA, "198.51.100.0/24"},
		{"edge.example.test.", dns.TypeAAAA, "2001:db8::/48"}, {"x.wild.example.test.", dns.TypeTXT, ""},
		{"host.sub.example.test.", dns.TypeA, ""}, {"chain.example.test.", dns.TypeA, ""},
		{"example.test.", dns.TypeANY, ""}, {"example.test.", dns.TypeIXFR, ""}, {"nx.example.test.", dns.TypeMX, ""},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		if q.ecs != "" {
			withECS(q.ecs)(m)
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	s := fuzzServer(f)
	src := netip.MustParseAddr("10.1.2.3")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil || req.Response {
			return
		}
		m := s.respond(req, src, nil)
		if m.Id != req.Id || !m.Response {
			t.Fatalf("reply id %d response %v for query %d", m.Id, m.Response, req.Id)
		}
		s.rrl.check(src, m, s.zoneOf(m))
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.maxUDP)
		}
		m.Truncate(size)
		b, err := m.Pack()
		if err != nil {
			return // e.g. names from the query that cannot be packed back
		}
		if len(b) > size {
			t.Fatalf("reply %d bytes > buffer %d", len(b), size)
		}
		var back dns.Msg
		if err := back.Unpack(b); err != nil {
			t.Fatalf("our reply does not parse: %v", err)
		}
	})
}

// FuzzZoneText parses arbitrary zone text; it must never panic.
func FuzzZoneText(f *testing.F) {
	f.Add(testZoneText)
	f.Add("$ORIGIN x.\n@ IN SOA a b 1 2 3 4 5\n@ IN NS a\n$GENERATE 1-3 h$ A 10.0.0.$\n")
	f.Add("@ IN SOA a b 1 2 3 4 5\n@ NS a\nc CNAME d\nc A 1.2.3.4\n")
	f.Add("$INCLUDE /etc/passwd\n")
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1<<14 || strings.Contains(text, "$GENERATE") && len(text) > 256 {
			return
		}
		z, err := ParseZone("example.test.", strings.NewReader(text), "fuzz")
		if err != nil {
			return
		}
		if z.SOA == nil || len(z.nodes[z.Origin].rrsets[dns.TypeNS]) == 0 {
			t.Fatal("zone accepted without SOA or apex NS")
		}
	})
}

// FuzzRegionMap parses region map entries and looks addresses up; the
// scope must always be a valid prefix length.
func FuzzRegionMap(f *testing.F) {
	f.Add("10.0.0.0/8=a\n10.1.0.0/16=b", []byte{10, 1, 2, 3}, uint8(24))
	f.Add("2001:db8::/32=x", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(56))
	f.Add("=\n/=\n1.2.3.4/33=a", []byte{1}, uint8(0))
	f.Fuzz(func(t *testing.T, entries string, addr []byte, bits uint8) {
		m, err := NewRegionMap(strings.Split(entries, "\n"), nil)
		if err != nil {
			return
		}
		a, ok := netip.AddrFromSlice(addr)
		if !ok {
			return
		}
		region, matched, scope := m.Lookup(a, int(bits))
		if scope < 0 || scope > a.Unmap().BitLen() {
			t.Fatalf("scope %d for %v/%d", scope, a, bits)
		}
		if region != "" && !matched.IsValid() {
			t.Fatal("region without a matching prefix")
		}
	})
}

// FuzzParseTarget parses target specs from the configuration.
func FuzzParseTarget(f *testing.F) {
	f.Add("edge-eu 192.0.2.10 region=eu weight=2 health=http://192.0.2.10:8081/healthz")
	f.Add("gw ::1 health=tcp://[::1]:80")
	f.Add("x 1.2.3.4 weight=-1 nope")
	f.Fuzz(func(t *testing.T, spec string) {
		tg, err := ParseTarget(spec)
		if err != nil {
			return
		}
		if !tg.Addr.IsValid() || tg.ID == "" || tg.Weight < 0 {
			t.Fatalf("accepted %q as %+v", spec, tg)
		}
	})
}

// FuzzExplain feeds arbitrary explain parameters.
func FuzzExplain(f *testing.F) {
	f.Add("edge.example.test", uint16(dns.TypeA), "198.51.100.0/24")
	f.Add("a..b", uint16(0), "1.2.3.4")
	f.Add("x", uint16(dns.TypeAAAA), "::/0")
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, name string, qtype uint16, client string) {
		if len(name) > 300 || len(client) > 64 {
			return
		}
		s.Explain(name, qtype, client)
	})
}
