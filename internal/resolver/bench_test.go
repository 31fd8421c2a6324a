package resolver

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkExchangeUDP measures one upstream UDP exchange (fresh socket,
// random ID, reply matched) against a minimal responder.
func BenchmarkExchangeUDP(b *testing.B) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			buf[2] |= 0x80 // QR
			pc.WriteTo(buf[:n], from)
		}
	}()
	r, err := New(Config{Addr: "127.0.0.1:0", RootHints: []string{"127.0.0.1:1"}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	server := netip.MustParseAddrPort(pc.LocalAddr().String())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.exchangeUDP(ctx, server, "h1.bench.test.", dns.TypeA, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedHandle measures the per-packet work of a cache hit,
// without the sockets.
func BenchmarkCachedHandle(b *testing.B) {
	r := fuzzResolver(b)
	m := new(dns.Msg)
	m.SetQuestion("H1.bench.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	pkt, _ := m.Pack()
	buf := make([]byte, 0, 512)
	var hq handledQuery
	now := r.now()
	b.ReportAllocs()
	for b.Loop() {
		reply, _ := r.handle(&hq, pkt, false, buf, now)
		if len(reply) == 0 {
			b.Fatal("no reply")
		}
	}
}
