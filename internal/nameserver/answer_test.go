package nameserver

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestAnswers(t *testing.T) {
	s := startServer(t, Config{})
	addr := s.Addr()
	type want struct {
		rcode  int
		aa     bool
		answer []string // substrings of answer records, in order
		ns     []string // substrings of authority records
		extra  []string // substrings of additional records
		nsTTL  uint32   // TTL of the authority SOA, when ns holds one
	}
	cases := []struct {
		name  string
		qname string
		qtype uint16
		want  want
	}{
		{"A", "www.example.test", dns.TypeA, want{aa: true, answer: []string{"192.0.2.1", "192.0.2.2"}}},
		{"AAAA", "www.example.test", dns.TypeAAAA, want{aa: true, answer: []string{"2001:db8::1"}}},
		{"case-insensitive", "WWW.Example.TEST", dns.TypeA, want{aa: true, answer: []string{"192.0.2.1", "192.0.2.2"}}},
		{"SOA", "example.test", dns.TypeSOA, want{aa: true, answer: []string{"SOA\tns1.example.test. hostmaster.example.test. 2024010101"}}},
		{"NS with glue", "example.test", dns.TypeNS, want{aa: true, answer: []string{"ns1.example.test.", "ns2.example.test."}, extra: []string{"127.0.0.1", "127.0.0.2"}}},
		{"CAA", "example.test", dns.TypeCAA, want{aa: true, answer: []string{`issue "letsencrypt.org"`}}},
		{"CNAME followed", "alias.example.test", dns.TypeA, want{aa: true, answer: []string{"CNAME\twww.example.test.", "192.0.2.1", "192.0.2.2"}}},
		{"CNAME chain", "chain.example.test", dns.TypeA, want{aa: true, answer: []string{"CNAME\talias.", "CNAME\twww.", "192.0.2.1", "192.0.2.2"}}},
		{"CNAME asked", "alias.example.test", dns.TypeCNAME, want{aa: true, answer: []string{"CNAME\twww.example.test."}}},
		{"CNAME dangling", "dangling.example.test", dns.TypeA, want{rcode: dns.RcodeNameError, aa: true, answer: []string{"CNAME\tnowhere."}, ns: []string{"SOA"}, nsTTL: 300}},
		{"CNAME out of zone", "out.example.test", dns.TypeA, want{aa: true, answer: []string{"CNAME\twww.elsewhere.test."}}},
		{"MX with additional", "mail.example.test", dns.TypeMX, want{aa: true, answer: []string{"MX\t10 mx.example.test."}, extra: []string{"192.0.2.25"}}},
		{"TXT", "txt.example.test", dns.TypeTXT, want{aa: true, answer: []string{`"hello world" "second string"`}}},
		{"SRV", "_http._tcp.example.test", dns.TypeSRV, want{aa: true, answer: []string{"SRV\t0 5 8080 www.example.test."}, extra: []string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}}},
		{"wildcard", "anything.wild.example.test", dns.TypeA, want{aa: true, answer: []string{"anything.wild.example.test.\t60\tIN\tA\t192.0.2.99"}}},
		{"wildcard deep", "a.b.wild.example.test", dns.TypeTXT, want{aa: true, answer: []string{"a.b.wild.example.test.\t60\tIN\tTXT\t\"wildcard\""}}},
		{"wildcard NODATA", "x.wild.example.test", dns.TypeMX, want{aa: true, ns: []string{"SOA"}, nsTTL: 300}},
		{"empty non-terminal", "deep.example.test", dns.TypeA, want{aa: true, ns: []string{"SOA"}, nsTTL: 300}},
		{"NODATA", "www.example.test", dns.TypeMX, want{aa: true, ns: []string{"SOA"}, nsTTL: 300}},
		{"NXDOMAIN", "missing.example.test", dns.TypeA, want{rcode: dns.RcodeNameError, aa: true, ns: []string{"SOA"}, nsTTL: 300}},
		{"NXDOMAIN below ENT", "x.ent.deep.example.test", dns.TypeA, want{rcode: dns.RcodeNameError, aa: true, ns: []string{"SOA"}}},
		{"referral", "host.sub.example.test", dns.TypeA, want{aa: false, ns: []string{"NS\tns.sub.example.test.", "NS\tns.other.test."}, extra: []string{"192.0.2.53"}}},
		{"referral at cut", "sub.example.test", dns.TypeA, want{aa: false, ns: []string{"NS\tns.sub.example.test.", "NS\tns.other.test."}, extra: []string{"192.0.2.53"}}},
		{"SOA at cut is a referral", "sub.example.test", dns.TypeSOA, want{aa: false, ns: []string{"NS\tns.sub.example.test.", "NS\tns.other.test."}, extra: []string{"192.0.2.53"}}},
		{"DS at cut from the parent", "sub.example.test", dns.TypeDS, want{aa: true, answer: []string{"DS\t12345 13 2"}}},
		{"glue below cut is a referral", "ns.sub.example.test", dns.TypeA, want{aa: false, ns: []string{"NS\tns.sub.example.test.", "NS\tns.other.test."}, extra: []string{"192.0.2.53"}}},
		{"ANY is minimal (RFC 8482)", "www.example.test", dns.TypeANY, want{aa: true, answer: []string{"HINFO\t\"RFC8482\" \"\""}}},
		{"out of zone", "www.example.org", dns.TypeA, want{rcode: dns.RcodeRefused}},
		{"parent of zone", "test", dns.TypeA, want{rcode: dns.RcodeRefused}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := query(t, addr, c.qname, c.qtype)
			if r.Rcode != c.want.rcode {
				t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.want.rcode], r)
			}
			if r.Authoritative != c.want.aa {
				t.Fatalf("AA %v, want %v\n%v", r.Authoritative, c.want.aa, r)
			}
			if r.RecursionAvailable {
				t.Fatal("RA set by an authoritative server")
			}
			check := func(section string, rrs []dns.RR, want []string) {
				if len(rrs) != len(want) {
					t.Fatalf("%s: %d records, want %d\n%v", section, len(rrs), len(want), r)
				}
				for i, w := range want {
					if !strings.Contains(rrs[i].String(), w) {
						t.Fatalf("%s[%d] = %q, want it to contain %q", section, i, rrs[i], w)
					}
				}
			}
			check("answer", r.Answer, c.want.answer)
			check("authority", r.Ns, c.want.ns)
			var extra []dns.RR
			for _, rr := range r.Extra {
				if rr.Header().Rrtype != dns.TypeOPT {
					extra = append(extra, rr)
				}
			}
			check("additional", extra, c.want.extra)
			if c.want.nsTTL != 0 && r.Ns[0].Header().Ttl != c.want.nsTTL {
				t.Fatalf("negative SOA TTL %d, want %d", r.Ns[0].Header().Ttl, c.want.nsTTL)
			}
		})
	}
}

// TestNegativeTTL checks RFC 2308 §3: the SOA in a negative answer has
// TTL min(SOA TTL, SOA MINIMUM), whichever is smaller.
func TestNegativeTTL(t *testing.T) {
	for _, c := range []struct {
		soaTTL, minimum, want uint32
	}{{3600, 300, 300}, {60, 300, 60}, {120, 120, 120}} {
		text := strings.Replace(strings.Replace(testZoneText, "$TTL 3600", "$TTL "+itoa(c.soaTTL), 1),
			"1209600 300", "1209600 "+itoa(c.minimum), 1)
		s := startServer(t, Config{Zones: []ZoneConfig{{Origin: "example.test.", Text: text}}})
		for _, q := range []struct {
			name  string
			qtype uint16
		}{{"nx.example.test", dns.TypeA}, {"www.example.test", dns.TypeTXT}} {
			r := query(t, s.Addr(), q.name, q.qtype)
			if len(r.Ns) != 1 || r.Ns[0].Header().Ttl != c.want {
				t.Fatalf("SOA TTL %d MINIMUM %d: authority %v, want TTL %d", c.soaTTL, c.minimum, r.Ns, c.want)
			}
		}
		// The SOA asked for directly keeps its own TTL.
		if r := query(t, s.Addr(), "example.test", dns.TypeSOA); r.Answer[0].Header().Ttl != c.soaTTL {
			t.Fatalf("SOA answer TTL %d, want %d", r.Answer[0].Header().Ttl, c.soaTTL)
		}
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// TestTruncationAndTCP: an answer larger than the client's buffer is sent
// with TC over UDP, and whole over TCP.
func TestTruncationAndTCP(t *testing.T) {
	var big strings.Builder
	big.WriteString(testZoneText)
	for i := range 40 {
		big.WriteString("big 60 IN TXT \"" + strings.Repeat("x", 40) + itoa(uint32(i)) + "\"\n")
	}
	s := startServer(t, Config{Zones: []ZoneConfig{{Origin: "example.test.", Text: big.String()}}})

	r := query(t, s.Addr(), "big.example.test", dns.TypeTXT, noEDNS)
	if !r.Truncated {
		t.Fatalf("no TC on a %d-record answer over 512-byte UDP", len(r.Answer))
	}
	r.Compress = true
	if r.Len() > 512 {
		t.Fatalf("UDP reply %d bytes > 512 without EDNS", r.Len())
	}
	r = query(t, s.Addr(), "big.example.test", dns.TypeTXT, func(m *dns.Msg) { m.IsEdns0().SetUDPSize(4096) })
	r.Compress = true
	if !r.Truncated || r.Len() > 1232 {
		t.Fatalf("EDNS 4096 must still be capped at MaxUDPSize 1232: TC=%v len=%d", r.Truncated, r.Len())
	}
	c := &dns.Client{Net: "tcp", Timeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("big.example.test.", dns.TypeTXT)
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("TCP: TC=%v, %d answers, want 40", r.Truncated, len(r.Answer))
	}
	// Pipelined queries on one TCP connection (RFC 7766).
	conn, err := c.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 5 {
		q := new(dns.Msg)
		q.SetQuestion("www.example.test.", dns.TypeA)
		q.Id = uint16(100 + i)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != uint16(100+i) || len(r.Answer) != 2 {
			t.Fatalf("pipelined reply %d: id %d, %d answers", i, r.Id, len(r.Answer))
		}
	}
}

func TestEDNS(t *testing.T) {
	s := startServer(t, Config{})
	r := query(t, s.Addr(), "www.example.test", dns.TypeA)
	if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != 1232 {
		t.Fatalf("reply OPT %v, want UDP size 1232", r.IsEdns0())
	}
	r = query(t, s.Addr(), "www.example.test", dns.TypeA, noEDNS)
	if r.IsEdns0() != nil {
		t.Fatal("OPT in the reply to a query without EDNS")
	}
	r = query(t, s.Addr(), "www.example.test", dns.TypeA, func(m *dns.Msg) { m.IsEdns0().SetVersion(1) })
	if r.Rcode != dns.RcodeBadVers {
		t.Fatalf("EDNS version 1: rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
	// ECS with address bits beyond the source prefix: FORMERR (RFC 7871 §7.1.1).
	r = query(t, s.Addr(), "www.example.test", dns.TypeA, func(m *dns.Msg) {
		// Family 1, source /12, scope 0, address 10.1: bit 15 is beyond /12.
		// (miekg/dns masks EDNS0_SUBNET when packing, so send it raw.)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1, 12, 0, 10, 1}})
	})
	if r.Rcode != dns.RcodeFormatError {
		t.Fatalf("bad ECS: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	// Class CH is not served.
	r = query(t, s.Addr(), "www.example.test", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("class CH: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	// Dynamic UPDATE (RFC 2136) is refused with NOTIMP: zones change through files and the platform.
	m := new(dns.Msg)
	m.SetUpdate("example.test.")
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("UPDATE: rcode %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
}

// TestMalformed sends garbage and checks the server keeps answering.
func TestMalformed(t *testing.T) {
	s := startServer(t, Config{})
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := new(dns.Msg)
	good.SetQuestion("www.example.test.", dns.TypeA)
	wire, _ := good.Pack()
	packets := [][]byte{
		{}, {0}, {1, 2, 3}, make([]byte, 12), make([]byte, 600),
		append(slices.Clone(wire[:12]), 0xff, 0xff, 0xff),  // header, then a broken name
		append(slices.Clone(wire), 0xc0, 0x0c, 0xc0, 0x0c), // trailing pointers
		{0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0},      // a response: never answered
	}
	// A compression pointer loop in the question name.
	loop := slices.Clone(wire[:12])
	loop = append(loop, 0xc0, 0x0c, 0, 1, 0, 1)
	packets = append(packets, loop)
	for _, p := range packets {
		conn.Write(p)
	}
	r := query(t, s.Addr(), "www.example.test", dns.TypeA)
	if len(r.Answer) != 2 {
		t.Fatalf("after garbage: %v", r)
	}
	// A header-only query gets FORMERR back.
	hdr := []byte{0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	conn.Write(hdr)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no FORMERR for a truncated query: %v", err)
		}
		if n >= 12 && buf[0] == 0xab && buf[1] == 0xcd {
			if buf[3]&0xf != dns.RcodeFormatError || buf[2]&0x80 == 0 {
				t.Fatalf("reply header %x, want a FORMERR response", buf[:12])
			}
			break
		}
	}
}
