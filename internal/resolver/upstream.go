package resolver

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Errors of one upstream exchange.
var (
	errTimeout  = errors.New("resolver: upstream timeout")
	errBudget   = errors.New("resolver: query budget exhausted")
	errMismatch = errors.New("resolver: upstream reply does not match the query")
	// errTooBig: a UDP reply filled the read buffer, so it may have been
	// cut; the query is retried over TCP.
	errTooBig = errors.New("resolver: upstream UDP reply larger than the buffer")
)

// udpReadSize is the read buffer for upstream UDP replies: above the
// 1232-byte EDNS size we advertise (a larger datagram from a server that
// ignores it is cut, fails to parse and counts as an error). TCP replies
// get a buffer of their announced length.
const udpReadSize = 4096

// bufPool holds UDP read buffers for upstream replies.
var bufPool = sync.Pool{New: func() any { b := make([]byte, udpReadSize); return &b }}

// serverInfo is what the resolver remembers of one server address.
type serverInfo struct {
	srtt   atomic.Int64 // smoothed round-trip time, microseconds
	noEDNS atomic.Bool  // answered FORMERR to EDNS; query it without
	fails  atomic.Int32 // consecutive timeouts
}

// initialSRTT is the smoothed RTT of a server never queried (Unbound's
// UNKNOWN_SERVER_NICENESS): low enough that unknown servers get tried,
// high enough that a known fast server is preferred.
const initialSRTT = 376 * time.Millisecond

// servers is the table of serverInfo, bounded: when it is full it is
// cleared (the information is only a preference).
type servers struct {
	mu  sync.RWMutex
	m   map[netip.AddrPort]*serverInfo
	max int
}

func (s *servers) get(a netip.AddrPort) *serverInfo {
	s.mu.RLock()
	si := s.m[a]
	s.mu.RUnlock()
	if si != nil {
		return si
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if si = s.m[a]; si != nil {
		return si
	}
	if len(s.m) >= s.max {
		s.m = make(map[netip.AddrPort]*serverInfo)
	}
	si = new(serverInfo)
	si.srtt.Store(int64(initialSRTT / time.Microsecond))
	s.m[a] = si
	return si
}

// randomID returns a query ID from the system's CSPRNG.
func randomID() uint16 {
	var b [2]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint16(rand.Uint32())
	}
	return binary.BigEndian.Uint16(b[:])
}

// exchange sends one query (name, qtype, no recursion desired) to server
// and returns its reply, retrying over TCP when the UDP reply is
// truncated, and without EDNS when the server rejects it. It counts
// against st's budget and the outstanding-query limit.
func (r *Resolver) exchange(ctx context.Context, st *reqState, server netip.AddrPort, name string, qtype uint16) (*dns.Msg, error) {
	if st.queries >= r.cfg.MaxQueriesPerRequest {
		r.met.limits.WithLabelValues("queries").Inc()
		return nil, errBudget
	}
	st.queries++
	select {
	case r.outstanding <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.met.outstanding.Inc()
	defer func() {
		<-r.outstanding
		r.met.outstanding.Dec()
	}()

	si := r.servers.get(server)
	edns := !si.noEDNS.Load()
	start := time.Now()
	m, err := r.exchangeUDP(ctx, server, name, qtype, edns)
	transport := "udp"
	if (err == nil && m.Truncated) || errors.Is(err, errTooBig) {
		r.met.upstream.WithLabelValues("udp", "truncated").Inc()
		transport = "tcp"
		m, err = r.exchangeTCP(ctx, server, name, qtype, edns)
	}
	if err == nil && edns && (m.Rcode == dns.RcodeFormatError || m.Rcode == dns.RcodeNotImplemented) && m.IsEdns0() == nil {
		// RFC 6891 section 7: a server that does not know EDNS answers
		// FORMERR without an OPT; ask again without one.
		si.noEDNS.Store(true)
		m, err = r.exchangeUDP(ctx, server, name, qtype, false)
		if err == nil && m.Truncated {
			m, err = r.exchangeTCP(ctx, server, name, qtype, false)
		}
	}
	rtt := time.Since(start)
	switch {
	case err == nil:
		si.fails.Store(0)
		old := si.srtt.Load()
		us := rtt.Microseconds()
		si.srtt.Store(old - old/4 + us/4) // EWMA, 1/4 weight to the sample
		r.met.upstream.WithLabelValues(transport, "ok").Inc()
		r.met.upstreamDur.Observe(rtt.Seconds())
	case errors.Is(err, errTimeout):
		si.fails.Add(1)
		old := si.srtt.Load()
		si.srtt.Store(min(max(old*2, int64(r.cfg.QueryTimeout/time.Microsecond)), int64(120*time.Second/time.Microsecond)))
		r.met.upstream.WithLabelValues(transport, "timeout").Inc()
	case errors.Is(err, errMismatch):
		r.met.upstream.WithLabelValues(transport, "mismatch").Inc()
	default:
		si.fails.Add(1)
		r.met.upstream.WithLabelValues(transport, "error").Inc()
	}
	return m, err
}

// newQuery builds the query sent upstream, as a message (for matching the
// reply) and packed: RD clear, a random ID, and with edns an OPT record
// advertising cfg.UDPSize.
func (r *Resolver) newQuery(name string, qtype uint16, edns bool) (*dns.Msg, []byte, error) {
	m := new(dns.Msg)
	m.Id = randomID()
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	b := make([]byte, headerLen+len(name)+2+4+optLen)
	binary.BigEndian.PutUint16(b[0:], m.Id)
	binary.BigEndian.PutUint16(b[4:], 1)
	off, err := dns.PackDomainName(name, b, headerLen, nil, false)
	if err != nil {
		return nil, nil, fmt.Errorf("resolver: pack query %q: %w", name, err)
	}
	b = b[:off]
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, dns.ClassINET)
	if edns {
		b = appendOPT(b, r.cfg.UDPSize, 0)
	}
	return m, b, nil
}

// deadline returns when one upstream exchange must end.
func (r *Resolver) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(r.cfg.QueryTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// exchangeUDP sends the query from a fresh socket (a random source port
// chosen by the kernel) and waits for the matching reply; replies with
// another ID or question are ignored, as a spoofing attempt would be.
func (r *Resolver) exchangeUDP(ctx context.Context, server netip.AddrPort, name string, qtype uint16, edns bool) (*dns.Msg, error) {
	q, out, err := r.newQuery(name, qtype, edns)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return nil, fmt.Errorf("resolver: dial %s: %w", server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.SetDeadline(r.deadline(ctx)); err != nil {
		return nil, err
	}
	if _, err := conn.Write(out); err != nil {
		return nil, fmt.Errorf("resolver: send to %s: %w", server, err)
	}
	var buf []byte
	if r.cfg.UDPSize < udpReadSize {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf = *bp
	} else {
		buf = make([]byte, r.cfg.UDPSize+1)
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errTimeout
			}
			return nil, fmt.Errorf("resolver: read from %s: %w", server, err)
		}
		if n == len(buf) {
			return nil, errTooBig
		}
		m, err := matchReply(buf[:n], q)
		if errors.Is(err, errMismatch) {
			continue // not ours: keep waiting for the real reply
		}
		return m, err
	}
}

// exchangeTCP sends the query over a new TCP connection.
func (r *Resolver) exchangeTCP(ctx context.Context, server netip.AddrPort, name string, qtype uint16, edns bool) (*dns.Msg, error) {
	q, out, err := r.newQuery(name, qtype, edns)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Deadline: r.deadline(ctx)}
	conn, err := d.DialContext(ctx, "tcp", server.String())
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil, errTimeout
		}
		return nil, fmt.Errorf("resolver: dial tcp %s: %w", server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.SetDeadline(r.deadline(ctx)); err != nil {
		return nil, err
	}
	frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(out)), uint16(len(out)))
	if _, err := conn.Write(append(frame, out...)); err != nil {
		return nil, fmt.Errorf("resolver: send tcp to %s: %w", server, err)
	}
	var lenBuf [2]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		return nil, tcpReadErr(ctx, server, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, tcpReadErr(ctx, server, err)
	}
	return matchReply(buf, q)
}

func tcpReadErr(ctx context.Context, server netip.AddrPort, err error) error {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errTimeout
	}
	return fmt.Errorf("resolver: read tcp from %s: %w", server, err)
}

// matchReply parses a reply and checks that it answers q: same ID, the
// response bit, opcode QUERY and the same question (name compared without
// case). A truncated reply is returned with only its header and question
// read. A reply that matches but does not parse is an error other than
// errMismatch.
func matchReply(b []byte, q *dns.Msg) (*dns.Msg, error) {
	if len(b) < headerLen || binary.BigEndian.Uint16(b) != q.Id {
		return nil, errMismatch
	}
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&flagQR == 0 {
		return nil, errMismatch
	}
	m := new(dns.Msg)
	var err error
	if flags&flagTC != 0 {
		// The rest may be cut anywhere; only the header and question count.
		err = m.Unpack(b[:min(len(b), questionEnd(b))])
		m.Truncated = true
	} else {
		err = m.Unpack(b)
	}
	if err != nil {
		return nil, fmt.Errorf("resolver: malformed reply: %w", err)
	}
	if m.Opcode != dns.OpcodeQuery {
		return nil, errMismatch
	}
	if len(m.Question) != 1 {
		// FORMERR and NOTIMP replies may carry no question.
		if len(m.Question) == 0 && (m.Rcode == dns.RcodeFormatError || m.Rcode == dns.RcodeNotImplemented) {
			return m, nil
		}
		return nil, errMismatch
	}
	got, want := m.Question[0], q.Question[0]
	if got.Qtype != want.Qtype || got.Qclass != want.Qclass || canonical(got.Name) != canonical(want.Name) {
		return nil, errMismatch
	}
	return m, nil
}

// questionEnd returns the end of the question section of a packed
// message, or len(b) when it cannot be found. It zeroes the answer,
// authority and additional counts in b's header, so that b cut there
// unpacks as a message with only its question.
func questionEnd(b []byte) int {
	if len(b) < headerLen {
		return len(b)
	}
	off := headerLen
	for range int(binary.BigEndian.Uint16(b[4:])) {
		end, ok := nameEnd(b, off, true)
		if !ok || end+4 > len(b) {
			return len(b)
		}
		off = end + 4
	}
	// Clear the record counts so that Unpack reads only the question.
	for i := 6; i < headerLen; i++ {
		b[i] = 0
	}
	return off
}
