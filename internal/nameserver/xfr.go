package nameserver

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Journal limits: deltas kept per zone for IXFR, and records across them.
const (
	maxJournalDeltas  = 200
	maxJournalRecords = 200_000
	xfrChunkBytes     = 16 << 10 // records per transfer message, by size
)

// delta is one serial step of a zone, for IXFR (RFC 1995).
type delta struct {
	from, to       *dns.SOA
	removed, added []dns.RR
}

// commit makes z the current version of zs: it computes the transfer
// content (static records plus the healthy pool targets), and when that
// or the SOA changed, moves the serial forward, journals the difference
// and queues a NOTIFY. Callers hold s.mu.
func (s *Server) commit(zs *zoneState, z *Zone) {
	content := make(map[string]dns.RR, len(z.records)+8)
	for _, rr := range z.records {
		content[rrKey(rr)] = rr
	}
	for _, p := range zs.pools {
		for _, rr := range p.transferRecords() {
			content[rrKey(rr)] = rr
		}
	}
	fileSOA := z.SOA
	old := zs.soa.Load()
	var serial uint32
	if old == nil {
		serial = fileSOA.Serial
		if len(zs.pools) > 0 {
			// Dynamic zones move their serial on every health change; start
			// from the clock so a restart does not go backwards.
			serial = newerSerial(serial, uint32(time.Now().Unix()))
		}
	} else {
		var removed, added []dns.RR
		for k, rr := range zs.content {
			if _, ok := content[k]; !ok {
				removed = append(removed, rr)
			}
		}
		for k, rr := range content {
			if _, ok := zs.content[k]; !ok {
				added = append(added, rr)
			}
		}
		soaChanged := !sameSOAFields(old.soa, fileSOA) || (serialLess(old.soa.Serial, fileSOA.Serial))
		if len(removed) == 0 && len(added) == 0 && !soaChanged {
			zs.zone.Store(z)
			return
		}
		serial = old.soa.Serial + 1
		if serialLess(serial, fileSOA.Serial) {
			serial = fileSOA.Serial
		}
		sortRRs(removed)
		sortRRs(added)
		next := withSerial(fileSOA, serial)
		zs.journal = append(zs.journal, delta{from: old.soa, to: next, removed: removed, added: added})
		trimJournal(zs)
		s.metrics.serial.WithLabelValues(s.cfg.Name, zs.origin).Set(float64(serial))
		zs.content = content
		zs.zone.Store(z)
		zs.soa.Store(newSOAPair(next))
		s.logger.Info("nameserver: zone changed", "zone", zs.origin, "serial", serial, "removed", len(removed), "added", len(added))
		select {
		case s.notify <- zs.origin:
		default:
		}
		return
	}
	zs.content = content
	zs.zone.Store(z)
	zs.soa.Store(newSOAPair(withSerial(fileSOA, serial)))
	s.metrics.serial.WithLabelValues(s.cfg.Name, zs.origin).Set(float64(serial))
}

func newSOAPair(soa *dns.SOA) *soaPair {
	neg := dns.Copy(soa).(*dns.SOA)
	neg.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl) // RFC 2308 §3
	return &soaPair{soa: soa, neg: neg}
}

func withSerial(soa *dns.SOA, serial uint32) *dns.SOA {
	c := dns.Copy(soa).(*dns.SOA)
	c.Serial = serial
	return c
}

func sameSOAFields(a, b *dns.SOA) bool {
	return a.Hdr.Ttl == b.Hdr.Ttl && a.Ns == b.Ns && a.Mbox == b.Mbox && a.Refresh == b.Refresh &&
		a.Retry == b.Retry && a.Expire == b.Expire && a.Minttl == b.Minttl
}

// serialLess reports a < b in serial number arithmetic (RFC 1982).
func serialLess(a, b uint32) bool {
	return a != b && int32(b-a) > 0
}

func newerSerial(a, b uint32) uint32 {
	if serialLess(a, b) {
		return b
	}
	return a
}

func sortRRs(rrs []dns.RR) {
	slices.SortFunc(rrs, func(a, b dns.RR) int {
		if a.String() < b.String() {
			return -1
		}
		return 1
	})
}

func trimJournal(zs *zoneState) {
	total := 0
	for _, d := range zs.journal {
		total += len(d.removed) + len(d.added)
	}
	for len(zs.journal) > 0 && (len(zs.journal) > maxJournalDeltas || total > maxJournalRecords) {
		total -= len(zs.journal[0].removed) + len(zs.journal[0].added)
		zs.journal = zs.journal[1:]
	}
}

// allowTransfer reports whether src may transfer zones.
func (s *Server) allowTransfer(src netip.Addr) bool {
	src = src.Unmap()
	for _, p := range s.cfg.TransferAllow {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// transferOut answers an AXFR or IXFR over TCP.
func (s *Server) transferOut(w dns.ResponseWriter, req *dns.Msg, src netip.Addr) {
	q := req.Question[0]
	kind := "axfr"
	if q.Qtype == dns.TypeIXFR {
		kind = "ixfr"
	}
	refuse := func(rcode int) {
		m := new(dns.Msg)
		m.SetRcode(req, rcode)
		w.WriteMsg(m)
		s.metrics.transfers.WithLabelValues(s.cfg.Name, kind, "refused").Inc()
	}
	zs := s.zones.Load().byOrigin[dns.CanonicalName(q.Name)]
	if zs == nil || q.Qclass != dns.ClassINET {
		refuse(dns.RcodeNotAuth)
		return
	}
	if !s.allowTransfer(src) {
		s.logger.Warn("nameserver: transfer refused", "zone", zs.origin, "client", src)
		refuse(dns.RcodeRefused)
		return
	}
	// Snapshot under the lock; send outside it.
	s.mu.Lock()
	cur := zs.soa.Load().soa
	var chain []delta
	full := true
	upToDate := false
	if kind == "ixfr" {
		var client *dns.SOA
		for _, rr := range req.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				client = soa
			}
		}
		if client == nil {
			s.mu.Unlock()
			refuse(dns.RcodeFormatError)
			return
		}
		switch {
		case !serialLess(client.Serial, cur.Serial):
			upToDate = true
		default:
			if c, ok := journalChain(zs.journal, client.Serial, cur.Serial); ok {
				chain, full = c, false
			}
		}
	}
	var records []dns.RR
	if full && !upToDate {
		records = make([]dns.RR, 0, len(zs.content))
		for _, rr := range zs.content {
			records = append(records, rr)
		}
	}
	s.mu.Unlock()

	var rrs []dns.RR
	switch {
	case upToDate:
		rrs = []dns.RR{cur}
		kind += "-uptodate"
	case full:
		sortForTransfer(records, zs.origin)
		rrs = make([]dns.RR, 0, len(records)+2)
		rrs = append(rrs, cur)
		rrs = append(rrs, records...)
		rrs = append(rrs, cur)
		if kind == "ixfr" {
			kind = "ixfr-full"
		}
	default:
		rrs = append(rrs, cur)
		for _, d := range chain {
			rrs = append(rrs, d.from)
			rrs = append(rrs, d.removed...)
			rrs = append(rrs, d.to)
			rrs = append(rrs, d.added...)
		}
		rrs = append(rrs, cur)
	}
	ch := make(chan *dns.Envelope)
	errc := make(chan error, 1)
	tr := new(dns.Transfer)
	go func() {
		err := tr.Out(w, req, ch)
		for range ch { // drain after a write error
		}
		errc <- err
	}()
	var batch []dns.RR
	size := 0
	for _, rr := range rrs {
		l := dns.Len(rr)
		if len(batch) > 0 && size+l > xfrChunkBytes {
			ch <- &dns.Envelope{RR: batch}
			batch, size = nil, 0
		}
		batch = append(batch, rr)
		size += l
	}
	if len(batch) > 0 {
		ch <- &dns.Envelope{RR: batch}
	}
	close(ch)
	result := "ok"
	if err := <-errc; err != nil {
		result = "error"
		s.logger.Warn("nameserver: transfer failed", "zone", zs.origin, "client", src, "err", err)
	}
	s.metrics.transfers.WithLabelValues(s.cfg.Name, kind, result).Inc()
	s.logger.Info("nameserver: transfer", "zone", zs.origin, "type", kind, "client", src, "serial", cur.Serial, "records", len(rrs))
}

// journalChain returns the deltas leading from serial from to serial to.
func journalChain(j []delta, from, to uint32) ([]delta, bool) {
	i := slices.IndexFunc(j, func(d delta) bool { return d.from.Serial == from })
	if i < 0 {
		return nil, false
	}
	chain := j[i:]
	for k := 1; k < len(chain); k++ {
		if chain[k].from.Serial != chain[k-1].to.Serial {
			return nil, false
		}
	}
	if chain[len(chain)-1].to.Serial != to {
		return nil, false
	}
	return chain, true
}

// sortForTransfer orders records so that the apex comes first and names
// follow in canonical order (secondaries do not need it; it makes
// transfers reproducible).
func sortForTransfer(rrs []dns.RR, origin string) {
	slices.SortStableFunc(rrs, func(a, b dns.RR) int {
		an, bn := a.Header().Name, b.Header().Name
		if an != bn {
			if an == origin {
				return -1
			}
			if bn == origin {
				return 1
			}
			if an < bn {
				return -1
			}
			return 1
		}
		if a.Header().Rrtype != b.Header().Rrtype {
			return int(a.Header().Rrtype) - int(b.Header().Rrtype)
		}
		if a.String() < b.String() {
			return -1
		}
		return 1
	})
}

// notifier sends NOTIFY (RFC 1996) to the secondaries for each changed
// zone, retrying until each answers.
func (s *Server) notifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case origin := <-s.notify:
			for _, sec := range s.cfg.Notify {
				s.wg.Go(func() { s.sendNotify(ctx, origin, sec) })
			}
		}
	}
}

func (s *Server) sendNotify(ctx context.Context, origin, secondary string) {
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	// Send from the server's own address, so that the secondary's ACL for
	// its primary matches (the kernel would pick 127.0.0.1 on loopback).
	if ap, err := netip.ParseAddrPort(s.Addr()); err == nil && !ap.Addr().IsUnspecified() {
		c.Dialer = &net.Dialer{Timeout: time.Second, LocalAddr: &net.UDPAddr{IP: ap.Addr().AsSlice()}}
	}
	wait := 250 * time.Millisecond
	for attempt := 0; attempt < 5; attempt++ {
		zs := s.zones.Load().byOrigin[origin]
		if zs == nil {
			return
		}
		m := new(dns.Msg)
		m.SetNotify(origin)
		m.Answer = []dns.RR{zs.soa.Load().soa}
		resp, _, err := c.ExchangeContext(ctx, m, secondary)
		if err == nil && resp.Rcode == dns.RcodeSuccess {
			s.metrics.notifies.WithLabelValues(s.cfg.Name, "ok").Inc()
			s.logger.Info("nameserver: notified", "zone", origin, "secondary", secondary)
			return
		}
		if err == nil {
			err = errRcode(resp.Rcode)
		}
		s.logger.Warn("nameserver: notify failed", "zone", origin, "secondary", secondary, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
	s.metrics.notifies.WithLabelValues(s.cfg.Name, "failed").Inc()
}

type errRcode int

func (e errRcode) Error() string { return "rcode " + dns.RcodeToString[int(e)] }
