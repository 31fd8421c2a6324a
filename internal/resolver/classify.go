package resolver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// kind is what a server's reply means for the iteration.
type kind int

const (
	kindLame     kind = iota // unusable: try another server
	kindAnswer               // records for the name (maybe a chain that leaves the zone)
	kindNXDOMAIN             // the name (or the chain's end) does not exist
	kindNODATA               // the name exists without records of the type
	kindReferral             // a delegation to a zone below the server's
)

func (k kind) String() string {
	return [...]string{"lame", "answer", "nxdomain", "nodata", "referral"}[k]
}

// maxChain bounds the records of a CNAME/DNAME chain taken from one reply.
const maxChain = 16

// classified is a reply reduced to what the resolver may believe of it.
type classified struct {
	kind kind
	// chain is the answer section kept: CNAME/DNAME records from the
	// question's name on, then the RRset asked for. Only records in the
	// bailiwick of the server's zone are kept.
	chain []dns.RR
	// target is the name the chain ends at (the question's name when there
	// is no CNAME). With kindAnswer and complete false, the resolver must
	// look target up itself.
	target   string
	complete bool
	soa      *dns.SOA    // the negative answer's SOA, in bailiwick
	cut      *delegation // kindReferral: the child zone
	nsTTL    uint32      // kindReferral: the NS RRset's TTL
}

// classify interprets reply m to the question (qname, qtype) sent to a
// server of zone. It is the resolver's bailiwick check: every record
// outside zone is ignored, referrals must point strictly below zone and
// towards qname, glue is accepted only for the referral's NS names and
// only inside zone, and the SOA of a negative answer must be in zone and
// cover the name denied. qname and zone are canonical.
func classify(m *dns.Msg, zone, qname string, qtype uint16) classified {
	c := classified{target: qname}
	if m == nil || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) {
		return c
	}
	// Follow the chain through the answer section.
	cur := qname
	used := make([]bool, len(m.Answer))
	seen := map[string]bool{qname: true}
	loop := false
chain:
	for range maxChain {
		if !isSub(zone, cur) {
			break // records for cur are not this server's to give
		}
		var final []dns.RR
		var cname *dns.CNAME
		var dname *dns.DNAME
		for i, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || used[i] {
				continue
			}
			owner := canonical(h.Name)
			switch {
			case owner == cur && (h.Rrtype == qtype || qtype == dns.TypeANY):
				final = append(final, rr)
				used[i] = true
			case owner == cur && h.Rrtype == dns.TypeCNAME && cname == nil:
				cname = rr.(*dns.CNAME)
				used[i] = true
			case h.Rrtype == dns.TypeDNAME && owner != cur && isSub(owner, cur) && isSub(zone, owner) && dname == nil:
				dname = rr.(*dns.DNAME)
				used[i] = true
			}
		}
		switch {
		case len(final) > 0:
			c.chain = append(c.chain, final...)
			c.complete = true
			break chain
		case dname != nil:
			c.chain = append(c.chain, dname)
			owner := canonical(dname.Hdr.Name)
			target := canonical(cur[:len(cur)-len(owner)] + dname.Target)
			if _, ok := dns.IsDomainName(target); !ok || len(target) > 255 {
				break chain
			}
			if cname == nil || canonical(cname.Target) != target {
				// Synthesize the CNAME (RFC 6672 section 3.1).
				cname = &dns.CNAME{Hdr: dns.RR_Header{Name: cur, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: dname.Hdr.Ttl}, Target: target}
			}
			c.chain = append(c.chain, cname)
			cur = target
		case cname != nil:
			c.chain = append(c.chain, cname)
			cur = canonical(cname.Target)
		default:
			break chain
		}
		if seen[cur] {
			loop = true
			break
		}
		seen[cur] = true
	}
	c.target = cur
	if c.complete {
		c.kind = kindAnswer
		return c
	}
	if len(c.chain) > 0 && (loop || !isSub(zone, cur)) {
		// The chain leaves the zone, or loops: the rest is looked up
		// elsewhere (and a loop is caught there).
		c.kind = kindAnswer
		return c
	}
	soa := findSOA(m.Ns, zone, cur)
	if m.Rcode == dns.RcodeNameError {
		c.kind = kindNXDOMAIN
		c.soa = soa
		return c
	}
	if soa == nil {
		if cut, ttl := findReferral(m, zone, cur); cut != nil {
			if len(c.chain) > 0 {
				// A chain into a delegated zone: look the target up.
				c.kind = kindAnswer
				return c
			}
			c.kind = kindReferral
			c.cut = cut
			c.nsTTL = ttl
			return c
		}
		if !m.Authoritative {
			// No SOA, no referral, not authoritative: a lame server,
			// or one that delegates upwards.
			if len(c.chain) > 0 {
				c.kind = kindAnswer
			}
			return c
		}
	}
	c.kind = kindNODATA
	c.soa = soa
	return c
}

// findSOA returns the first SOA of the authority section that is inside
// zone and at or above name.
func findSOA(ns []dns.RR, zone, name string) *dns.SOA {
	for _, rr := range ns {
		soa, ok := rr.(*dns.SOA)
		if !ok || soa.Hdr.Class != dns.ClassINET {
			continue
		}
		owner := canonical(soa.Hdr.Name)
		if isSub(zone, owner) && isSub(owner, name) {
			return soa
		}
	}
	return nil
}

// findReferral returns the delegation in m's authority section: the NS
// RRset of a zone strictly below zone and at or above name, with the glue
// of the additional section that is inside zone; and the least TTL of the
// NS RRset.
func findReferral(m *dns.Msg, zone, name string) (*delegation, uint32) {
	var d *delegation
	var ttl uint32
	for _, rr := range m.Ns {
		ns, ok := rr.(*dns.NS)
		if !ok || ns.Hdr.Class != dns.ClassINET {
			continue
		}
		owner := canonical(ns.Hdr.Name)
		if owner == zone || !isSub(zone, owner) || !isSub(owner, name) {
			continue
		}
		if d == nil {
			d = &delegation{zone: owner, glue: make(map[string][]netip.Addr)}
			ttl = ns.Hdr.Ttl
		}
		if owner != d.zone {
			continue // one cut per referral; ignore others
		}
		target := canonical(ns.Ns)
		if _, ok := dns.IsDomainName(target); !ok || len(d.ns) >= 32 {
			continue
		}
		dup := false
		for _, n := range d.ns {
			dup = dup || n == target
		}
		if !dup {
			d.ns = append(d.ns, target)
		}
		ttl = min(ttl, ns.Hdr.Ttl)
	}
	if d == nil {
		return nil, 0
	}
	for _, rr := range m.Extra {
		var ip netip.Addr
		switch g := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(g.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(g.AAAA.To16())
		default:
			continue
		}
		owner := canonical(rr.Header().Name)
		if rr.Header().Class != dns.ClassINET || !ip.IsValid() || !isSub(zone, owner) {
			continue
		}
		for _, n := range d.ns {
			if n == owner && len(d.glue[n]) < 8 {
				d.glue[n] = append(d.glue[n], ip.Unmap())
			}
		}
	}
	return d, ttl
}

// negativeTTL is the time to live of a negative answer with this SOA:
// min(SOA TTL, SOA MINIMUM) (RFC 2308 section 5), or 0 without a SOA.
func negativeTTL(soa *dns.SOA) uint32 {
	if soa == nil {
		return 0
	}
	return min(soa.Hdr.Ttl, soa.Minttl)
}
