package resolver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// maxUDPQuery bounds a client UDP packet read; larger ones are cut and
// fail to parse.
const maxUDPQuery = 4096

// udpBatch is the number of packets one recvmmsg/sendmmsg call moves.
const udpBatch = 32

// batchConn is the recvmmsg/sendmmsg view of a UDP socket (the same
// methods exist on ipv4.PacketConn and ipv6.PacketConn).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

// serveUDP reads client packets until the socket closes, a batch at a
// time. Cache hits and errors are answered from this goroutine, in one
// batch; misses go to the worker pool.
func (r *Resolver) serveUDP(conn *net.UDPConn) {
	bc := newBatchConn(conn)
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	replies := make([][]byte, udpBatch)
	hqs := make([]handledQuery, udpBatch)
	answered := make([]int, udpBatch) // in index of each out message
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxUDPQuery)}
		out[i].Buffers = make([][]byte, 1)
		replies[i] = make([]byte, 0, 1024)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		start := time.Now()
		now := r.now()
		nout := 0
		for i := range n {
			m := &in[i]
			from, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			hq := &hqs[i]
			reply, ok := r.handle(hq, m.Buffers[0][:m.N], false, replies[i][:0], now)
			if reply != nil {
				replies[i] = reply
				out[nout].Buffers[0] = reply
				out[nout].Addr = from
				answered[nout] = i
				nout++
				continue
			}
			if ok {
				ap := from.AddrPort()
				r.dispatch(job{hq: hq.detach(), start: start, send: func(b []byte) error {
					_, err := conn.WriteToUDPAddrPort(b, ap)
					return err
				}}, nil)
			}
		}
		// One clock read for the batch (its replies leave together), and
		// the metrics before the replies, so that a client that got its
		// reply finds it counted.
		elapsed := time.Since(start)
		for _, i := range answered[:nout] {
			r.observeElapsed(&hqs[i], replies[i], elapsed)
		}
		for sent := 0; sent < nout; {
			k, err := bc.WriteBatch(out[sent:nout], 0)
			if err != nil {
				k = max(k, 1) // skip the reply that failed, send the rest
			} else if k == 0 {
				break
			}
			sent += k
		}
	}
}

// job is a client query the cache could not answer, for a worker.
type job struct {
	hq    *handledQuery
	tcp   bool
	start time.Time
	send  func([]byte) error
}

// workerIdle is how long an idle worker waits for a job before it exits.
const workerIdle = 30 * time.Second

// dispatch hands j to an idle worker, or starts one if fewer than
// MaxClientQueries run; beyond that the query is dropped (the client
// retries), counted as overload, and onDrop (if any) runs.
func (r *Resolver) dispatch(j job, onDrop func()) {
	select {
	case r.jobs <- j:
		return
	default:
	}
	if r.workers.Add(1) > int64(r.cfg.MaxClientQueries) {
		r.workers.Add(-1)
		r.met.dropped.WithLabelValues("overload").Inc()
		if onDrop != nil {
			onDrop()
		}
		return
	}
	r.wg.Go(func() { r.worker(j) })
}

// worker resolves jobs until it has been idle for workerIdle or the
// resolver stops. Workers live on so that their grown stacks are reused.
func (r *Resolver) worker(j job) {
	defer r.workers.Add(-1)
	base := r.base()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		r.met.inflight.Inc()
		reply := r.resolveAndRender(j.hq, j.tcp)
		r.observe(j.hq, reply, j.start)
		j.send(reply)
		r.met.inflight.Dec()
		idle.Reset(workerIdle)
		select {
		case j = <-r.jobs:
		case <-idle.C:
			return
		case <-base.Done():
			return
		}
	}
}

// handledQuery carries a parsed query to the metrics and the resolution.
type handledQuery struct {
	q   query
	res result
}

// handle processes one client packet into hq, which the caller provides.
// It returns the reply when it can be given at once (a cache hit or an
// error); otherwise, with ok true, the query must be resolved
// (hq.detach, then resolveAndRender), and with ok false the packet is
// dropped. It never panics on any input (FuzzHandle).
func (r *Resolver) handle(hq *handledQuery, pkt []byte, tcp bool, buf []byte, now int64) (reply []byte, ok bool) {
	q, err := parseQuery(pkt)
	*hq = handledQuery{q: q, res: resNone}
	switch {
	case errors.Is(err, errShort):
		r.met.dropped.WithLabelValues("short").Inc()
		return nil, false
	case errors.Is(err, errResponse):
		r.met.dropped.WithLabelValues("response").Inc()
		return nil, false
	case errors.Is(err, errOpcode):
		return errorReply(&q, dns.RcodeNotImplemented, r.clientSize(&q, tcp)), true
	case err != nil:
		return errorReply(&q, dns.RcodeFormatError, r.clientSize(&q, tcp)), true
	}
	if q.edns && q.ednsVer != 0 {
		return errorReply(&q, dns.RcodeBadVers, r.clientSize(&q, tcp)), true
	}
	if q.qclass != dns.ClassINET {
		return errorReply(&q, dns.RcodeRefused, r.clientSize(&q, tcp)), true
	}
	switch q.qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeOPT, dns.TypeMAILA, dns.TypeMAILB, 0:
		return errorReply(&q, dns.RcodeRefused, r.clientSize(&q, tcp)), true
	}
	a, res := r.cached(q.name, q.qtype, now)
	if a == nil {
		return nil, true
	}
	hq.res = res
	return r.render(a, &hq.q, res, tcp, buf, now), true
}

// detach returns a copy of hq that owns its question's bytes (which point
// into a reused packet buffer), for a worker.
func (hq *handledQuery) detach() *handledQuery {
	c := *hq
	c.q.qname = append([]byte(nil), hq.q.qname...)
	return &c
}

// clientSize is the largest reply the client takes over this transport.
func (r *Resolver) clientSize(q *query, tcp bool) int {
	if tcp {
		return dns.MaxMsgSize
	}
	return min(q.udpSize, r.cfg.UDPSize)
}

// resolveAndRender resolves a query the cache could not answer and
// returns the reply.
func (r *Resolver) resolveAndRender(hq *handledQuery, tcp bool) []byte {
	a, res, _ := r.resolveClient(r.base(), hq.q.name, hq.q.qtype, true)
	hq.res = res
	return r.render(a, &hq.q, res, tcp, nil, r.now())
}

// render builds the reply to q from a, truncating it to what the client
// takes (setting TC) when needed.
func (r *Resolver) render(a *answer, q *query, res result, tcp bool, buf []byte, now int64) []byte {
	t := a.tpl.Load()
	if t == nil {
		var err error
		t, err = buildTemplate(a)
		if err != nil {
			r.logger.Error("resolver: pack answer", "name", a.qname, "err", err)
			return errorReply(q, dns.RcodeServerFailure, r.clientSize(q, tcp))
		}
		a.tpl.Store(t)
	}
	age := uint32(max(0, (now-a.stored)/int64(time.Second)))
	size := r.clientSize(q, tcp)
	reply := t.render(buf, q, age, res == resStale, uint32(r.cfg.StaleTTL/time.Second), r.cfg.UDPSize)
	if len(reply) <= size {
		return reply
	}
	m := new(dns.Msg)
	if err := m.Unpack(reply); err != nil {
		return errorReply(q, dns.RcodeServerFailure, size)
	}
	m.Truncate(size)
	out, err := m.Pack()
	if err != nil {
		return errorReply(q, dns.RcodeServerFailure, size)
	}
	return out
}

// observe records a reply in the metrics.
func (r *Resolver) observe(hq *handledQuery, reply []byte, start time.Time) {
	r.observeElapsed(hq, reply, time.Since(start))
}

// observeElapsed records a reply that took elapsed in the metrics.
func (r *Resolver) observeElapsed(hq *handledQuery, reply []byte, elapsed time.Duration) {
	if hq == nil || len(reply) < headerLen {
		return
	}
	rcode := int(binary.BigEndian.Uint16(reply[2:]) & 0xF)
	if hq.q.edns && hq.q.ednsVer != 0 {
		rcode = dns.RcodeBadVers
	}
	r.met.query(hq.q.qtype, rcode).Inc()
	r.met.latency(hq.res).Observe(elapsed.Seconds())
	if c := r.met.lookup(hq.res); c != nil {
		c.Inc()
	}
}

// serveTCP accepts client connections until the listener closes.
func (r *Resolver) serveTCP(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		r.mu.Lock()
		if r.conns == nil || len(r.conns) >= r.cfg.MaxTCPConns {
			r.mu.Unlock()
			r.met.dropped.WithLabelValues("overload").Inc()
			c.Close()
			continue
		}
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Go(func() {
			r.serveConn(c)
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
			c.Close()
		})
	}
}

// maxPipelined bounds the queries of one TCP connection being resolved
// at once (RFC 7766 pipelining; replies may come out of order).
const maxPipelined = 16

// serveConn answers the length-prefixed queries of one TCP connection.
func (r *Resolver) serveConn(c net.Conn) {
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		frame := make([]byte, 2, 2+len(b))
		binary.BigEndian.PutUint16(frame, uint16(len(b)))
		c.SetWriteDeadline(time.Now().Add(r.cfg.TCPIdleTimeout))
		_, err := c.Write(append(frame, b...))
		return err
	}
	var pending sync.WaitGroup
	defer pending.Wait()
	slots := make(chan struct{}, maxPipelined)
	var lenBuf [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(r.cfg.TCPIdleTimeout))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		pkt := make([]byte, n)
		if _, err := io.ReadFull(c, pkt); err != nil {
			return
		}
		start := time.Now()
		hq := new(handledQuery)
		reply, ok := r.handle(hq, pkt, true, nil, r.now())
		if reply != nil {
			r.observe(hq, reply, start)
			if write(reply) != nil {
				return
			}
			continue
		}
		if !ok {
			continue
		}
		// Misses of a connection are resolved through the worker pool
		// too; slots bounds how many one connection has in flight.
		slots <- struct{}{}
		pending.Add(1)
		done := func() { <-slots; pending.Done() }
		r.dispatch(job{hq: hq, tcp: true, start: start, send: func(b []byte) error {
			defer done()
			return write(b)
		}}, done)
	}
}
