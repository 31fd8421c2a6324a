package nameserver

import (
	"errors"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is the number of datagrams read (recvmmsg) and written
// (sendmmsg) per system call.
const udpBatch = 32

// batchConn reads and writes datagrams in batches.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP reads queries from conn until it is closed. Several goroutines
// run it on one socket; each answers its datagrams itself (no goroutine
// per query), with its own buffers, reading and writing up to udpBatch
// datagrams per system call.
func (s *Server) serveUDP(conn *net.UDPConn) {
	var bc batchConn = ipv4.NewPacketConn(conn)
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		bc = ipv6.NewPacketConn(conn)
	}
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
	}
	outBufs := make([][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, s.maxUDP)
	}
	out := make([]ipv4.Message, 0, udpBatch)
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		out = out[:0]
		for i := range n {
			src, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			ap := src.AddrPort()
			if b := s.answerUDP(in[i].Buffers[0][:in[i].N], ap, outBufs[len(out)]); b != nil {
				out = append(out, ipv4.Message{Buffers: [][]byte{b}, Addr: src})
			}
		}
		for sent := 0; sent < len(out); {
			k, err := bc.WriteBatch(out[sent:], 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				sent++ // skip the datagram that failed
				continue
			}
			sent += k
		}
	}
}

// answerUDP answers one datagram into out (or a larger buffer) and returns
// the reply, or nil to send nothing. A panic while answering is logged
// and counted; the server keeps serving.
func (s *Server) answerUDP(pkt []byte, src netip.AddrPort, out []byte) (reply []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.metrics.malformed.WithLabelValues(s.cfg.Name).Inc()
			s.logger.Error("nameserver: panic answering a query", "client", src.Addr(), "panic", v, "stack", string(debug.Stack()))
			reply = nil
		}
	}()
	start := time.Now()
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		s.metrics.malformed.WithLabelValues(s.cfg.Name).Inc()
		// Answer FORMERR only to what looks like a query; never answer a
		// response (that would let two servers loop).
		if len(pkt) >= 12 && pkt[2]&0x80 == 0 {
			if s.rrl.check(src.Addr(), &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeFormatError}}, "") == rrlAllow {
				return append(out[:0], pkt[0], pkt[1], 0x80|pkt[2]&0x78, byte(dns.RcodeFormatError), 0, 0, 0, 0, 0, 0, 0, 0)
			}
		}
		return nil
	}
	if req.Response {
		return nil
	}
	m := s.respond(req, src.Addr(), nil)
	qtype := uint16(0)
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	switch s.rrl.check(src.Addr(), m, s.zoneOf(m)) {
	case rrlDrop:
		s.metrics.rrl.WithLabelValues(s.cfg.Name, "dropped").Inc()
		return nil
	case rrlSlip:
		s.metrics.rrl.WithLabelValues(s.cfg.Name, "slipped").Inc()
		m.Answer, m.Ns = nil, nil
		m.Extra = keepOPT(m.Extra)
		m.Truncated = true
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.maxUDP)
	}
	// Pack first: almost every reply fits, and then no size has to be
	// computed. Only a reply that does not fit is truncated (RFC 2181
	// §9: TC set, whole RRsets dropped) and packed again.
	b, err := m.PackBuffer(out)
	if err == nil && len(b) > size {
		m.Truncate(size)
		m.Compress = true // Truncate turns compression off when it is not needed to fit
		s.metrics.truncated.WithLabelValues(s.cfg.Name).Inc()
		b, err = m.PackBuffer(out)
	}
	if err != nil {
		s.logger.Warn("nameserver: pack reply", "err", err)
		return nil
	}
	s.qc.inc(false, qtype, m.Rcode)
	s.latUDP.Observe(time.Since(start).Seconds())
	return b
}

// zoneOf names the zone of a reply for RRL keys (NXDOMAIN answers of one
// zone share a bucket whatever the name).
func (s *Server) zoneOf(m *dns.Msg) string {
	if m.Rcode == dns.RcodeNameError && len(m.Ns) > 0 {
		return m.Ns[0].Header().Name
	}
	return ""
}

func keepOPT(extra []dns.RR) []dns.RR {
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			return []dns.RR{rr}
		}
	}
	return nil
}

// serveTCP answers one query on a TCP connection (pipelined queries on a
// connection arrive here in turn), including zone transfers.
func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) {
	defer func() {
		if v := recover(); v != nil {
			s.metrics.malformed.WithLabelValues(s.cfg.Name).Inc()
			s.logger.Error("nameserver: panic answering a query", "panic", v, "stack", string(debug.Stack()))
			w.Close()
		}
	}()
	start := time.Now()
	var src netip.Addr
	if a, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		src = a.AddrPort().Addr()
	}
	if len(req.Question) == 1 && req.Opcode == dns.OpcodeQuery {
		if t := req.Question[0].Qtype; t == dns.TypeAXFR || t == dns.TypeIXFR {
			s.transferOut(w, req, src)
			return
		}
	}
	m := s.respond(req, src, nil)
	if m.Len() > dns.MaxMsgSize {
		m.Truncate(dns.MaxMsgSize)
		m.Compress = true
	}
	if err := w.WriteMsg(m); err != nil {
		return
	}
	qtype := uint16(0)
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.qc.inc(true, qtype, m.Rcode)
	s.latTCP.Observe(time.Since(start).Seconds())
}
