package nameserver

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkUDPPath measures the per-query work of the UDP path (parse,
// answer, pack) without the socket, on a 10,000-host zone.
func BenchmarkUDPPath(b *testing.B) {
	var z strings.Builder
	z.WriteString("$ORIGIN bench.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 127.0.0.1\n")
	for i := range 10000 {
		fmt.Fprintf(&z, "h%d IN A 10.0.%d.%d\n", i, i/256%256, i%256)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{Origin: "bench.test.", Text: z.String()}}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var pkts [][]byte
	for i := range 1000 {
		m := new(dns.Msg)
		name := fmt.Sprintf("h%d.bench.test.", i*7)
		if i%6 == 0 {
			name = fmt.Sprintf("nx%d.bench.test.", i)
		}
		m.SetQuestion(name, dns.TypeA)
		p, _ := m.Pack()
		pkts = append(pkts, p)
	}
	out := make([]byte, dns.MaxMsgSize)
	src := netip.MustParseAddr("127.0.0.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := new(dns.Msg)
		if err := req.Unpack(pkts[i%len(pkts)]); err != nil {
			b.Fatal(err)
		}
		m := s.respond(req, src, nil)
		s.rrl.check(src, m, s.zoneOf(m))
		if _, err := m.PackBuffer(out); err != nil {
			b.Fatal(err)
		}
		s.qc.inc(false, dns.TypeA, m.Rcode)
	}
}
