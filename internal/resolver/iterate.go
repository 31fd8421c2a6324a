package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Errors that end a resolution; the client gets SERVFAIL.
var (
	errNoServers = errors.New("resolver: no server of the zone answered usefully")
	errReferrals = errors.New("resolver: too many referrals")
	errCNAMEs    = errors.New("resolver: CNAME chain too long or looping")
	errLoop      = errors.New("resolver: dependency loop")
)

// RFC 9156 section 2.3: at most maxMinimise minimised queries per name,
// the first oneLabel of them one label at a time.
const (
	maxMinimise = 10
	oneLabel    = 4
)

// maxServersPerZone bounds the addresses tried for one question to one
// zone.
const maxServersPerZone = 8

// reqState is the bookkeeping of one client query's resolution, nested
// look-ups of name server addresses included. It is used by one goroutine.
type reqState struct {
	queries int          // upstream queries sent
	depth   int          // nesting of name server address look-ups
	active  map[key]bool // questions being resolved, for loop detection
}

func newReqState() *reqState { return &reqState{active: make(map[key]bool)} }

// resolveFull answers (qname, qtype) from the cache or by iteration,
// following CNAMEs across zones, and caches what it learns. Only fresh
// cache entries are used.
func (r *Resolver) resolveFull(ctx context.Context, st *reqState, qname string, qtype uint16) (*answer, error) {
	k := key{name: qname, qtype: qtype}
	if st.active[k] {
		return nil, errLoop
	}
	st.active[k] = true
	defer delete(st.active, k)

	var pieces []*answer
	name := qname
	seen := map[string]bool{}
	for {
		if len(pieces) > r.cfg.MaxCNAMEs || seen[name] {
			r.met.limits.WithLabelValues("cnames").Inc()
			return nil, errCNAMEs
		}
		seen[name] = true
		a := r.lookupPiece(name, qtype)
		if a == nil {
			var err error
			a, err = r.iterate(ctx, st, name, qtype)
			if err != nil {
				return nil, err
			}
			r.store(key{name: name, qtype: qtype, part: a.dangling != ""}, a)
			if a.rcode == dns.RcodeNameError && len(a.answer) == 0 {
				r.store(key{name: name, qtype: typeNXDOMAIN}, a)
			}
		}
		pieces = append(pieces, a)
		if a.dangling == "" {
			break
		}
		name = a.dangling
	}
	if len(pieces) == 1 {
		return pieces[0], nil
	}
	// Join the pieces into one answer for qname.
	last := pieces[len(pieces)-1]
	out := &answer{qname: qname, qtype: qtype, rcode: last.rcode, ns: last.ns, ttl: last.ttl}
	now := r.now()
	for _, p := range pieces {
		age := uint32(max(0, (now-p.stored)/int64(time.Second)))
		for _, rr := range p.answer {
			rr = dns.Copy(rr)
			h := rr.Header()
			h.Ttl = h.Ttl - min(h.Ttl, age)
			out.answer = append(out.answer, rr)
		}
		out.ttl = min(out.ttl, p.ttl-min(p.ttl, age))
	}
	out.stored = now
	out.expires = now + int64(out.ttl)*int64(time.Second)
	r.store(k, out)
	return out, nil
}

// iterate resolves (qname, qtype) by walking down from the closest known
// zone cut, with QNAME minimisation, and returns the answer of the zone
// that holds qname (which may end in a CNAME into another zone).
func (r *Resolver) iterate(ctx context.Context, st *reqState, qname string, qtype uint16) (*answer, error) {
	deleg := r.closestDelegation(qname, qtype)
	minimise := !r.cfg.DisableQNAMEMinimisation
	known := deleg.zone // deepest name known to be in deleg's zone
	mcount := 0
	referrals := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		send, qt := qname, qtype
		if minimise && known != qname && mcount < maxMinimise {
			have, total := labels(known), labels(qname)
			step := 1
			if mcount >= oneLabel {
				step = max(1, (total-have)/(maxMinimise-mcount))
			}
			send = ancestorWithLabels(qname, have+step)
			mcount++
			if send != qname {
				qt = dns.TypeA
			}
		}
		c, err := r.queryZone(ctx, st, deleg, send, qt)
		if err != nil {
			return nil, err
		}
		if c.kind == kindReferral {
			if qtype == dns.TypeDS && c.cut.zone == qname {
				// DS lives on the parent side of the cut: ask again here.
				minimise = false
				continue
			}
			referrals++
			if referrals > r.cfg.MaxReferrals {
				r.met.limits.WithLabelValues("referrals").Inc()
				return nil, errReferrals
			}
			r.storeDelegation(c.cut, c.nsTTL)
			deleg = c.cut
			known = deleg.zone
			continue
		}
		if send != qname {
			// A minimised question was answered by the zone itself.
			if c.kind == kindNXDOMAIN {
				// The name above qname does not exist, so neither does
				// qname (RFC 8020); servers that get empty non-terminals
				// wrong say so too, so ask the full name to be sure, as
				// Unbound does outside its strict mode.
				minimise = false
				continue
			}
			known = send
			continue
		}
		return r.answerOf(c, qname, qtype), nil
	}
}

// answerOf builds the answer for (qname, qtype) from the final reply.
func (r *Resolver) answerOf(c classified, qname string, qtype uint16) *answer {
	a := &answer{qname: qname, qtype: qtype, rcode: dns.RcodeSuccess}
	maxTTL := uint32(r.cfg.MaxTTL / time.Second)
	ttl := maxTTL
	for _, rr := range c.chain {
		h := rr.Header()
		h.Ttl = min(h.Ttl, maxTTL)
		ttl = min(ttl, h.Ttl)
	}
	// RFC 2181 section 5.2: one TTL per RRset, the least.
	sameSet := func(a, b dns.RR) bool {
		ha, hb := a.Header(), b.Header()
		return ha.Rrtype == hb.Rrtype && canonical(ha.Name) == canonical(hb.Name)
	}
	for i, rr := range c.chain {
		for _, o := range c.chain[:i] {
			if sameSet(rr, o) {
				t := min(rr.Header().Ttl, o.Header().Ttl)
				rr.Header().Ttl, o.Header().Ttl = t, t
			}
		}
	}
	a.answer = c.chain
	if c.kind == kindAnswer && !c.complete {
		a.dangling = c.target
	}
	switch c.kind {
	case kindNXDOMAIN, kindNODATA:
		if c.kind == kindNXDOMAIN {
			a.rcode = dns.RcodeNameError
		}
		neg := min(negativeTTL(c.soa), uint32(r.cfg.MaxNegativeTTL/time.Second))
		if c.soa != nil {
			soa := dns.Copy(c.soa).(*dns.SOA)
			soa.Hdr.Ttl = neg // RFC 2308 section 3
			a.ns = []dns.RR{soa}
		}
		if len(c.chain) == 0 {
			ttl = neg
		} else {
			ttl = min(ttl, neg)
		}
	}
	a.ttl = ttl
	a.stored = r.now()
	a.expires = a.stored + int64(ttl)*int64(time.Second)
	return a
}

// closestDelegation returns the deepest fresh zone cut cached at or above
// qname (above it for DS, which the parent serves), else the root hints.
func (r *Resolver) closestDelegation(qname string, qtype uint16) *delegation {
	now := r.now()
	name := qname
	if qtype == dns.TypeDS && name != "." {
		name = ancestorWithLabels(name, labels(name)-1)
	}
	for _, i := range dns.Split(name) {
		if d, ok := r.delegs.Get(name[i:]); ok {
			if now < d.expires {
				return d
			}
			r.delegs.Delete(name[i:])
		}
	}
	return r.root
}

// storeDelegation caches a zone cut for its NS TTL (capped).
func (r *Resolver) storeDelegation(d *delegation, ttl uint32) {
	ttl = min(ttl, uint32(r.cfg.MaxTTL/time.Second))
	if ttl == 0 {
		return
	}
	d.expires = r.now() + int64(ttl)*int64(time.Second)
	r.delegs.Set(d.zone, d, 1) // no cache TTL: closestDelegation checks expires
}

// serverAddr is one address of a zone's servers with its preference.
type serverAddr struct {
	ap   netip.AddrPort
	srtt int64
}

// addrPort gives an address learned from DNS the configured port.
func (r *Resolver) addrPort(ip netip.Addr) netip.AddrPort {
	p := r.cfg.Port
	if sp, ok := r.ports[ip]; ok {
		p = sp
	}
	return netip.AddrPortFrom(ip, uint16(p))
}

// knownAddrs returns the addresses of d's servers known without a
// look-up: root hints, glue, and fresh cached A/AAAA answers for the NS
// names; and the NS names still without one.
func (r *Resolver) knownAddrs(d *delegation) ([]netip.AddrPort, []string) {
	if len(d.ns) == 0 {
		return slices.Clone(d.servers), nil
	}
	var addrs []netip.AddrPort
	var missing []string
	now := r.now()
	for _, n := range d.ns {
		found := false
		for _, ip := range d.glue[n] {
			addrs = append(addrs, r.addrPort(ip))
			found = true
		}
		if !found {
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
				if a := r.lookup(n, t); a != nil && a.fresh(now) {
					for _, ip := range addrsOf(a) {
						addrs = append(addrs, r.addrPort(ip))
						found = true
					}
				}
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	return addrs, missing
}

// addrsOf returns the addresses in an answer's final RRset.
func addrsOf(a *answer) []netip.Addr {
	var out []netip.Addr
	for _, rr := range a.answer {
		var ip netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(v.AAAA.To16())
		}
		if ip.IsValid() {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// order sorts addresses by smoothed RTT, fastest first, with random
// jitter so that servers of similar speed share the load.
func (r *Resolver) order(addrs []netip.AddrPort) []netip.AddrPort {
	s := make([]serverAddr, 0, len(addrs))
	seen := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		srtt := r.servers.get(a).srtt.Load()
		s = append(s, serverAddr{a, srtt + rand.Int64N(srtt/4+1)})
	}
	slices.SortFunc(s, func(a, b serverAddr) int { return int(a.srtt - b.srtt) })
	out := make([]netip.AddrPort, len(s))
	for i := range s {
		out[i] = s[i].ap
	}
	return out
}

// queryZone asks d's servers (send, qt) until one gives a usable reply,
// resolving name server addresses without glue when the known ones fail.
func (r *Resolver) queryZone(ctx context.Context, st *reqState, d *delegation, send string, qt uint16) (classified, error) {
	addrs, missing := r.knownAddrs(d)
	tried := 0
	var lastErr error
	try := func(list []netip.AddrPort) (classified, bool, error) {
		for _, a := range r.order(list) {
			if tried >= maxServersPerZone {
				return classified{}, false, nil
			}
			tried++
			m, err := r.exchange(ctx, st, a, send, qt)
			if err != nil {
				if errors.Is(err, errBudget) || ctx.Err() != nil {
					return classified{}, false, err
				}
				lastErr = err
				continue
			}
			c := classify(m, d.zone, send, qt)
			if c.kind != kindLame {
				return c, true, nil
			}
			lastErr = fmt.Errorf("resolver: %s gave an unusable reply (rcode %s) for %s in %s", a, dns.RcodeToString[m.Rcode], send, d.zone)
		}
		return classified{}, false, nil
	}
	if c, ok, err := try(addrs); ok || err != nil {
		return c, err
	}
	// Glueless delegation: look the name servers' addresses up.
	for _, n := range missing {
		if tried >= maxServersPerZone {
			break
		}
		if isSub(d.zone, n) {
			continue // inside the zone without glue: unreachable
		}
		if st.depth >= r.cfg.MaxDepth {
			r.met.limits.WithLabelValues("depth").Inc()
			break
		}
		st.depth++
		ips, err := r.lookupAddrs(ctx, st, n)
		st.depth--
		if err != nil {
			if errors.Is(err, errBudget) || ctx.Err() != nil {
				return classified{}, err
			}
			lastErr = err
			continue
		}
		list := make([]netip.AddrPort, 0, len(ips))
		for _, ip := range ips {
			list = append(list, r.addrPort(ip))
		}
		if c, ok, err := try(list); ok || err != nil {
			return c, err
		}
	}
	if lastErr != nil {
		return classified{}, fmt.Errorf("%w: %s in %s: %w", errNoServers, send, d.zone, lastErr)
	}
	return classified{}, fmt.Errorf("%w: %s in %s", errNoServers, send, d.zone)
}

// lookupAddrs resolves a name server's IPv4 addresses, or its IPv6 ones
// when it has none.
func (r *Resolver) lookupAddrs(ctx context.Context, st *reqState, name string) ([]netip.Addr, error) {
	var firstErr error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.resolveFull(ctx, st, name, t)
		if err != nil {
			if errors.Is(err, errBudget) || ctx.Err() != nil {
				return nil, err
			}
			firstErr = cmpOr(firstErr, err)
			continue
		}
		if ips := addrsOf(a); len(ips) > 0 {
			return ips, nil
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("resolver: name server %s has no address", name)
	}
	return nil, firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
