package resolver

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/miekg/dns"
)

// seedQueries returns packed client queries to seed the fuzzers.
func seedQueries(t testing.TB) [][]byte {
	var out [][]byte
	add := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	m := new(dns.Msg)
	m.SetQuestion("h1.bench.test.", dns.TypeA)
	add(m)
	m = new(dns.Msg)
	m.SetQuestion("Www.Example.", dns.TypeAAAA)
	m.SetEdns0(4096, true)
	add(m)
	m = new(dns.Msg)
	m.SetQuestion("a\\.b.example.", dns.TypeTXT)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	add(m)
	m = new(dns.Msg)
	m.SetQuestion("x.", dns.TypeAXFR)
	m.Opcode = dns.OpcodeUpdate
	add(m)
	out = append(out, []byte{0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'}, make([]byte, 12))
	return out
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range seedQueries(f) {
		f.Add(s)
	}
	f.Fuzz(checkParseQuery)
}

// checkParseQuery is FuzzParseQuery's property.
func checkParseQuery(t *testing.T, pkt []byte) {
	q, err := parseQuery(pkt)
	if err != nil {
		return
	}
	// What parseQuery accepts, miekg/dns reads the same way (unless it
	// rejects an EDNS option's contents, which we do not look at).
	m := new(dns.Msg)
	if m.Unpack(pkt) != nil {
		return
	}
	if len(m.Question) != 1 || canonical(m.Question[0].Name) != q.name || m.Question[0].Qtype != q.qtype {
		t.Fatalf("parseQuery %q %d, miekg %v", q.name, q.qtype, m.Question)
	}
	if (m.IsEdns0() != nil) != q.edns {
		t.Fatalf("EDNS: parseQuery %v, miekg %v", q.edns, m.IsEdns0() != nil)
	}
}

func FuzzHandle(f *testing.F) {
	for _, s := range seedQueries(f) {
		f.Add(s)
	}
	r := fuzzResolver(f)
	f.Fuzz(func(t *testing.T, pkt []byte) { checkHandle(t, r, pkt) })
}

// fuzzResolver returns an unstarted resolver with a few cached answers.
func fuzzResolver(f testing.TB) *Resolver {
	r, err := New(Config{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1:1"}}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	// Cache a positive, a negative and a chained answer.
	for _, c := range []classified{
		{kind: kindAnswer, complete: true, chain: []dns.RR{mustRR(f, "h1.bench.test. 300 IN A 10.0.0.1")}},
		{kind: kindNXDOMAIN, soa: mustRR(f, "bench.test. 3600 IN SOA ns. h. 1 2 3 4 300").(*dns.SOA)},
		{kind: kindAnswer, complete: true, chain: []dns.RR{mustRR(f, "www.example. 300 IN CNAME h1.bench.test."), mustRR(f, "h1.bench.test. 300 IN A 10.0.0.1")}},
	} {
		names := map[kind]string{kindNXDOMAIN: "nx.bench.test."}
		name := names[c.kind]
		if name == "" {
			name = canonical(c.chain[0].Header().Name)
		}
		a := r.answerOf(c, name, dns.TypeA)
		r.store(key{name: name, qtype: dns.TypeA}, a)
		r.store(key{name: name, qtype: dns.TypeAAAA}, a)
	}
	return r
}

// checkHandle is FuzzHandle's property: any packet gets a well-formed
// reply with its ID, or none; never a panic.
func checkHandle(t *testing.T, r *Resolver, pkt []byte) {
	for _, tcp := range []bool{false, true} {
		var hq handledQuery
		reply, ok := r.handle(&hq, pkt, tcp, nil, r.now())
		if reply == nil {
			continue
		}
		if !ok {
			t.Fatal("a reply for a dropped packet")
		}
		if binary.BigEndian.Uint16(reply) != binary.BigEndian.Uint16(pkt) {
			t.Fatal("reply ID differs from the query's")
		}
		m := new(dns.Msg)
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !m.Response {
			t.Fatal("reply without QR")
		}
		if q, err := parseQuery(pkt); err == nil && !tcp && len(reply) > max(q.udpSize, 512) {
			t.Fatalf("UDP reply of %d bytes to a client taking %d", len(reply), q.udpSize)
		}
	}
}

func FuzzClassify(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
		f.Add(b, uint8(1))
		f.Add(b, uint8(2))
	}
	m := new(dns.Msg)
	m.SetQuestion("test.", dns.TypeA)
	m.Ns = []dns.RR{mustRR(f, "test. 300 IN NS ns1.nic.test.")}
	m.Extra = []dns.RR{mustRR(f, "ns1.nic.test. 300 IN A 127.0.0.2"), mustRR(f, "evil. 300 IN A 6.6.6.6")}
	seed(m)
	m = new(dns.Msg)
	m.SetQuestion("c.bench.test.", dns.TypeA)
	m.Authoritative = true
	m.Answer = []dns.RR{mustRR(f, "c.bench.test. 300 IN CNAME h.bench.test."), mustRR(f, "h.bench.test. 300 IN A 10.0.0.1"),
		mustRR(f, "x.sub.bench.test. 300 IN DNAME y.example."), mustRR(f, "www.example. 300 IN A 6.6.6.6")}
	seed(m)
	m = new(dns.Msg)
	m.SetQuestion("nx.bench.test.", dns.TypeA)
	m.Rcode = dns.RcodeNameError
	m.Ns = []dns.RR{mustRR(f, "bench.test. 3600 IN SOA ns. h. 1 2 3 4 300")}
	seed(m)
	f.Fuzz(checkClassify)
}

// checkClassify is FuzzClassify's property: whatever a server sends, the
// resolver keeps only records in the server's bailiwick.
func checkClassify(t *testing.T, b []byte, zi uint8) {
	zones := []string{".", "test.", "bench.test."}
	m := new(dns.Msg)
	if m.Unpack(b) != nil || len(m.Question) != 1 {
		return
	}
	zone := zones[int(zi)%len(zones)]
	qname := canonical(m.Question[0].Name)
	if !isSub(zone, qname) {
		return
	}
	c := classify(m, zone, qname, m.Question[0].Qtype)
	for _, rr := range c.chain {
		if !isSub(zone, canonical(rr.Header().Name)) {
			t.Fatalf("kept %s from a server of %s", rr, zone)
		}
	}
	if c.soa != nil && !isSub(zone, canonical(c.soa.Hdr.Name)) {
		t.Fatalf("kept SOA %s from a server of %s", c.soa, zone)
	}
	if c.kind == kindReferral {
		if c.cut.zone == zone || !isSub(zone, c.cut.zone) || !isSub(c.cut.zone, qname) {
			t.Fatalf("referral to %s from %s for %s", c.cut.zone, zone, qname)
		}
		for n := range c.cut.glue {
			if !isSub(zone, n) {
				t.Fatalf("glue for %s from a server of %s", n, zone)
			}
		}
	}
	if c.kind != kindLame {
		r := &Resolver{cfg: Config{MaxTTL: 86400e9, MaxNegativeTTL: 3600e9}.withDefaults()}
		a := r.answerOf(c, qname, m.Question[0].Qtype)
		if _, err := buildTemplate(a); err != nil && len(a.answer) < 100 {
			t.Logf("template: %v", err) // names too long to pack are possible
		}
	}
}

func FuzzTTLOffsets(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("c.bench.test.", dns.TypeA)
	m.Answer = []dns.RR{mustRR(f, "c.bench.test. 300 IN CNAME h.bench.test."), mustRR(f, "h.bench.test. 200 IN A 10.0.0.1")}
	m.Ns = []dns.RR{mustRR(f, "bench.test. 3600 IN SOA ns. h. 1 2 3 4 300")}
	m.Compress = true
	b, _ := m.Pack()
	f.Add(b)
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xC0, 12})
	f.Fuzz(checkTTLOffsets)
}

// checkTTLOffsets is FuzzTTLOffsets' property: the offsets found are
// those of the TTLs miekg/dns reads.
func checkTTLOffsets(t *testing.T, b []byte) {
	offs, ok := ttlOffsets(b)
	m := new(dns.Msg)
	if m.Unpack(b) != nil || !ok {
		return
	}
	n := len(m.Answer) + len(m.Ns) + len(m.Extra)
	if len(offs) != n {
		t.Fatalf("%d offsets for %d records", len(offs), n)
	}
	var rrs []dns.RR
	rrs = append(append(append(rrs, m.Answer...), m.Ns...), m.Extra...)
	for i, o := range offs {
		if rrs[i].Header().Rrtype == dns.TypeOPT {
			continue
		}
		if got := binary.BigEndian.Uint32(b[o:]); got != rrs[i].Header().Ttl {
			t.Fatalf("record %d: TTL at offset %d is %d, want %d", i, o, got, rrs[i].Header().Ttl)
		}
	}
}

func FuzzMatchReply(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("h1.bench.test.", dns.TypeA)
	q.Id = 4242
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = []dns.RR{mustRR(f, "h1.bench.test. 300 IN A 10.0.0.1")}
	b, _ := r.Pack()
	f.Add(b)
	r.Truncated = true
	b, _ = r.Pack()
	f.Add(b[:len(b)-3])
	f.Fuzz(func(t *testing.T, b []byte) { checkMatchReply(t, q, b) })
}

// checkMatchReply is FuzzMatchReply's property.
func checkMatchReply(t *testing.T, q *dns.Msg, b []byte) {
	m, err := matchReply(append([]byte(nil), b...), q)
	if err == nil && (m.Id != q.Id || !m.Response) {
		t.Fatalf("accepted a reply with ID %d, QR %v", m.Id, m.Response)
	}
}

func FuzzParseServerAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1", "host:53", "1.2.3.4:0", "1.2.3.4:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := parseServerAddr(s, 53)
		if err == nil && (!ap.IsValid() || ap.Port() == 0) {
			t.Fatalf("%q parsed to %v", s, ap)
		}
	})
}

// TestFuzzBriefly runs every fuzz property over a few thousand
// deterministic mutations of the seeds (bit flips, cuts, insertions,
// spliced bytes), so that the suite fuzzes a little on every run, not
// only the seeds. `go test -fuzz FuzzX` explores much further.
func TestFuzzBriefly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := seedQueries(t)
	q := new(dns.Msg)
	q.SetQuestion("h1.bench.test.", dns.TypeA)
	q.Id = 4242
	reply := new(dns.Msg)
	reply.SetReply(q)
	reply.Answer = []dns.RR{mustRR(t, "h1.bench.test. 300 IN A 10.0.0.1")}
	reply.Ns = []dns.RR{mustRR(t, "bench.test. 300 IN NS ns1.bench.test.")}
	reply.Extra = []dns.RR{mustRR(t, "ns1.bench.test. 300 IN A 127.0.0.3")}
	rb, _ := reply.Pack()
	seeds = append(seeds, rb)
	r := fuzzResolver(t)
	for i := range 3000 {
		b := mutate(rng, seeds[i%len(seeds)])
		checkParseQuery(t, b)
		checkHandle(t, r, b)
		checkClassify(t, b, uint8(i))
		checkTTLOffsets(t, b)
		checkMatchReply(t, q, b)
	}
}

// mutate returns a copy of b with a few random changes.
func mutate(rng *rand.Rand, b []byte) []byte {
	out := append([]byte(nil), b...)
	for range 1 + rng.IntN(4) {
		if len(out) == 0 {
			out = append(out, byte(rng.UintN(256)))
			continue
		}
		i := rng.IntN(len(out))
		switch rng.IntN(5) {
		case 0:
			out[i] ^= 1 << rng.UintN(8)
		case 1:
			out[i] = byte(rng.UintN(256))
		case 2:
			out = out[:i]
		case 3:
			out = append(out[:i], append([]byte{byte(rng.UintN(256))}, out[i:]...)...)
		case 4:
			out[i] = []byte{0, 0xC0, 0x3F, 0xFF, 12}[rng.IntN(5)]
		}
	}
	return out
}

// TestDecodeNameMatchesMiekg checks every byte value in a label, in both
// cases, against miekg/dns's reading of the same name.
func TestDecodeNameMatchesMiekg(t *testing.T) {
	for b := range 256 {
		w := []byte{3, 'A', byte(b), 'z', 2, 'N', 'l', 0}
		name, _, err := dns.UnpackDomainName(w, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := decodeName(w), canonical(name); got != want {
			t.Fatalf("byte %d: %q, miekg %q", b, got, want)
		}
	}
	if got := decodeName([]byte{0}); got != "." {
		t.Fatalf("root: %q", got)
	}
}
