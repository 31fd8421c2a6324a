package nameserver

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds CNAME chains followed inside one zone.
const maxCNAMEChain = 8

// client is what a query says about who asks: the packet source and the
// EDNS Client Subnet option, if any.
type client struct {
	src   netip.Addr
	ecs   *dns.EDNS0_SUBNET // from the query; nil without ECS
	scope int               // ECS scope of the answer (set while answering)
	ex    *Explanation      // non-nil when explaining
}

// geoAddr returns the address and significant bits used to pick a region:
// the ECS subnet when the query carries one with a source prefix, else the
// packet's source address.
func (c *client) geoAddr() (netip.Addr, int) {
	if c.ecs != nil && c.ecs.SourceNetmask > 0 {
		if a, ok := netip.AddrFromSlice(c.ecs.Address); ok {
			a = a.Unmap()
			if c.ecs.Family == 2 {
				a = netip.AddrFrom16(a.As16())
			}
			return a, int(c.ecs.SourceNetmask)
		}
	}
	a := c.src.Unmap()
	return a, a.BitLen()
}

// respond builds the reply to a query. It never returns nil. The caller
// sizes it for the transport.
func (s *Server) respond(req *dns.Msg, src netip.Addr, ex *Explanation) *dns.Msg {
	m := new(dns.Msg)
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.Compress = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	m.Question = req.Question[:1]
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	cl := client{src: src, ex: ex}
	if opt := req.IsEdns0(); opt != nil {
		ro := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ro.SetUDPSize(uint16(s.maxUDP))
		if opt.Do() {
			ro.SetDo()
		}
		m.Extra = append(m.Extra, ro)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers // RFC 6891 §6.1.3
			return m
		}
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				if !validECS(e) {
					m.Rcode = dns.RcodeFormatError // RFC 7871 §7.1.1
					return m
				}
				cl.ecs = e
			}
		}
	}
	q := m.Question[0]
	qname := strings.ToLower(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	zs := s.zones.Load().findZone(qname)
	if zs == nil {
		m.Rcode = dns.RcodeRefused
		return m
	}
	z := zs.zone.Load()
	if ex != nil {
		ex.Zone = zs.origin
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		// Over UDP only an IXFR can be answered, and only with the current
		// SOA (RFC 1995 §2: the client then retries over TCP).
		if q.Qtype == dns.TypeIXFR && qname == zs.origin && s.allowTransfer(src) {
			m.Authoritative = true
			m.Answer = []dns.RR{zs.soa.Load().soa}
		} else {
			m.Rcode = dns.RcodeRefused
		}
		return m
	}
	s.answerZone(m, zs, z, qname, q.Qtype, &cl)
	if cl.ecs != nil {
		e := &dns.EDNS0_SUBNET{
			Code: dns.EDNS0SUBNET, Family: cl.ecs.Family, SourceNetmask: cl.ecs.SourceNetmask,
			SourceScope: uint8(cl.scope), Address: cl.ecs.Address,
		}
		if cl.ecs.SourceNetmask == 0 {
			e.SourceScope = 0
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	}
	return m
}

// validECS checks an ECS option per RFC 7871 §6: the address has no bits
// set beyond the source prefix length, and the scope is 0 in a query.
func validECS(e *dns.EDNS0_SUBNET) bool {
	if e.Family == 0 {
		return e.SourceNetmask == 0
	}
	if e.SourceScope != 0 {
		return false
	}
	var ip net.IP
	switch e.Family {
	case 1:
		ip = e.Address.To4()
	case 2:
		ip = e.Address.To16()
	}
	if ip == nil {
		return false
	}
	bitLen := len(ip) * 8
	if int(e.SourceNetmask) > bitLen {
		return false
	}
	masked := ip.Mask(net.CIDRMask(int(e.SourceNetmask), bitLen))
	return masked.Equal(ip)
}

// answerZone fills m with the answer from zone z for qname/qtype.
func (s *Server) answerZone(m *dns.Msg, zs *zoneState, z *Zone, qname string, qtype uint16, cl *client) {
	m.Authoritative = true
	name := qname
	for depth := 0; ; depth++ {
		if z.hasCuts {
			if cut := z.findCut(name, qtype); cut != nil {
				// Below a zone cut we are not authoritative: refer (RFC 1034
				// §4.3.2). After a CNAME the answer part stays authoritative.
				if depth == 0 {
					m.Authoritative = false
				}
				m.Ns = append(m.Ns, cut.rrsets[dns.TypeNS]...)
				s.addGlue(m, z, cut.rrsets[dns.TypeNS], true)
				if cl.ex != nil {
					cl.ex.note("referral to %s", cut.name)
				}
				return
			}
		}
		n := z.nodes[name]
		wild := false
		if n == nil {
			n = z.wildcard(name)
			if n == nil {
				m.Rcode = dns.RcodeNameError
				m.Ns = append(m.Ns, zs.soa.Load().neg)
				if cl.ex != nil {
					cl.ex.note("%s does not exist: NXDOMAIN", name)
				}
				return
			}
			wild = true
			if cl.ex != nil {
				cl.ex.note("%s synthesized from wildcard %s", name, n.name)
			}
		}
		if qtype == dns.TypeANY && depth == 0 {
			// RFC 8482: a minimal answer to ANY.
			m.Answer = append(m.Answer, &dns.HINFO{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: zs.soa.Load().neg.Hdr.Ttl},
				Cpu: "RFC8482",
			})
			return
		}
		if cn := n.rrsets[dns.TypeCNAME]; len(cn) > 0 && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, owned(cn[0], name, wild))
			target := strings.ToLower(cn[0].(*dns.CNAME).Target)
			if depth+1 >= maxCNAMEChain || !dns.IsSubDomain(z.Origin, target) || target == name {
				return // the resolver follows it
			}
			name = target
			continue
		}
		var rrs []dns.RR
		if qtype == dns.TypeSOA && n.name == z.Origin && !wild {
			rrs = []dns.RR{zs.soa.Load().soa}
		}
		if n.pool != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
			rrs = s.poolAnswer(n.pool, name, qtype, cl)
		}
		if len(rrs) == 0 && qtype != dns.TypeSOA {
			rrs = n.rrsets[qtype]
			if wild {
				c := make([]dns.RR, len(rrs))
				for i, rr := range rrs {
					c[i] = owned(rr, name, true)
				}
				rrs = c
			}
		}
		if len(rrs) == 0 {
			m.Ns = append(m.Ns, zs.soa.Load().neg) // NODATA (RFC 2308 §2.2)
			if cl.ex != nil {
				cl.ex.note("%s has no %s records: NODATA", name, dns.TypeToString[qtype])
			}
			return
		}
		m.Answer = append(m.Answer, rrs...)
		switch qtype {
		case dns.TypeNS, dns.TypeMX, dns.TypeSRV:
			s.addGlue(m, z, rrs, false)
		}
		return
	}
}

// poolAnswer returns the pool's records for this client and notes the
// ECS scope.
func (s *Server) poolAnswer(p *Pool, name string, qtype uint16, cl *client) []dns.RR {
	addr, bits := cl.geoAddr()
	sel := p.choose(qtype, addr, bits, s.cfg.Regions)
	if p.policy == PolicyGeo && cl.ecs != nil && cl.ecs.SourceNetmask > 0 {
		cl.scope = max(cl.scope, sel.scope)
	}
	if cl.ex != nil {
		cl.ex.addSelection(p, sel, addr, bits, s.checker)
	}
	s.metrics.poolAnswers.WithLabelValues(s.cfg.Name, p.policy, map[bool]string{true: "yes", false: "no"}[sel.failOpen]).Inc()
	return sel.records(name, p.ttl)
}

// owned returns rr, or a copy owned by name when synthesized from a
// wildcard.
func owned(rr dns.RR, name string, wild bool) dns.RR {
	if !wild {
		return rr
	}
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}

// findCut returns the highest delegation point at or above name, or nil.
// A DS query at the cut itself is answered from this (the parent) side.
// It walks from name up to the apex without allocating.
func (z *Zone) findCut(name string, qtype uint16) *node {
	var cut *node
	for off, end := 0, false; !end && len(name)-off > len(z.Origin); off, end = dns.NextLabel(name, off) {
		n := z.nodes[name[off:]]
		if n == nil || !n.cut || (off == 0 && qtype == dns.TypeDS) {
			continue
		}
		cut = n
	}
	return cut
}

// wildcard returns the wildcard node that synthesizes name (RFC 4592), or
// nil: "*" under name's closest encloser.
func (z *Zone) wildcard(name string) *node {
	for p := parentName(name); p != "" && dns.IsSubDomain(z.Origin, p); p = parentName(p) {
		if _, ok := z.nodes[p]; ok {
			return z.nodes["*."+p]
		}
	}
	return nil
}

// addGlue adds in-zone addresses for the targets of rrs (NS, MX, SRV) to
// the additional section. For referrals (glue) the addresses below the
// cut are used too.
func (s *Server) addGlue(m *dns.Msg, z *Zone, rrs []dns.RR, referral bool) {
	for _, rr := range rrs {
		var t string
		switch v := rr.(type) {
		case *dns.NS:
			t = v.Ns
		case *dns.MX:
			t = v.Mx
		case *dns.SRV:
			t = v.Target
		default:
			continue
		}
		t = strings.ToLower(t)
		if !dns.IsSubDomain(z.Origin, t) {
			continue
		}
		// Addresses below a cut are glue: sent with referrals and with NS
		// answers (root priming), never for MX or SRV targets.
		if _, isNS := rr.(*dns.NS); !isNS && !referral && z.hasCuts && z.findCut(t, dns.TypeA) != nil {
			continue
		}
		n := z.nodes[t]
		if n == nil {
			continue
		}
		m.Extra = append(m.Extra, n.rrsets[dns.TypeA]...)
		m.Extra = append(m.Extra, n.rrsets[dns.TypeAAAA]...)
	}
}
