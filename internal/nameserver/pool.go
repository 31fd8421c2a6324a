package nameserver

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Pool policies.
const (
	PolicyAll      = "all"      // every healthy target (multivalue), up to Count
	PolicyWeighted = "weighted" // Count targets drawn by weight
	PolicyGeo      = "geo"      // the client's region first, then by weight
)

// PoolConfig describes a dynamic name: A/AAAA records that come from a set
// of targets (gateways, edges) rather than from a zone file. Answers hold
// only healthy targets, chosen by the policy.
type PoolConfig struct {
	Name    string   // owner name, absolute or relative to the zone
	TTL     uint32   // TTL of the answers (default 5)
	Policy  string   // PolicyAll, PolicyWeighted or PolicyGeo (default PolicyAll)
	Count   int      // records per answer; 0 means 1 for weighted/geo and 8 for all
	Targets []Target // at least one
}

// Target is one address a pool can answer with.
type Target struct {
	ID     string     // name in explanations, logs and metrics, e.g. "edge-eu"
	Addr   netip.Addr // the A (IPv4) or AAAA (IPv6) data
	Weight int        // relative weight (0 means 1)
	Region string     // region the target serves (PolicyGeo)
	Health string     // http(s)://… (any 2xx is healthy) or tcp://host:port; empty: always healthy
}

// Pool is a PoolConfig bound to a zone, with the live health of its targets.
type Pool struct {
	name    string
	ttl     uint32
	policy  string
	count   int
	targets []*target
}

type target struct {
	Target
	healthy *atomic.Bool // shared by every target with the same health URL
}

func (c PoolConfig) validate(origin string) (string, error) {
	name := c.Name
	if !dns.IsFqdn(name) {
		switch {
		case name == "@" || name == "":
			name = origin
		case origin == ".":
			name += "."
		default:
			name = name + "." + origin
		}
	}
	name = dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(name); !ok || !dns.IsSubDomain(origin, name) {
		return "", fmt.Errorf("nameserver: pool %q: not a name in zone %s", c.Name, origin)
	}
	switch c.Policy {
	case "", PolicyAll, PolicyWeighted, PolicyGeo:
	default:
		return "", fmt.Errorf("nameserver: pool %s: unknown policy %q (want all, weighted or geo)", name, c.Policy)
	}
	if len(c.Targets) == 0 {
		return "", fmt.Errorf("nameserver: pool %s: no targets", name)
	}
	if c.Count < 0 {
		return "", fmt.Errorf("nameserver: pool %s: negative count", name)
	}
	for _, t := range c.Targets {
		if !t.Addr.IsValid() {
			return "", fmt.Errorf("nameserver: pool %s: target %q has no address", name, t.ID)
		}
		if t.Weight < 0 || t.Weight > 1_000_000 {
			return "", fmt.Errorf("nameserver: pool %s: target %q: weight %d out of 0..1000000", name, t.ID, t.Weight)
		}
		if t.Health != "" {
			if err := checkHealthURL(t.Health); err != nil {
				return "", fmt.Errorf("nameserver: pool %s: target %q: %w", name, t.ID, err)
			}
		}
	}
	return name, nil
}

func checkHealthURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("health %q: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https":
	case "tcp":
		if u.Host == "" || u.Port() == "" {
			return fmt.Errorf("health %q: want tcp://host:port", s)
		}
	default:
		return fmt.Errorf("health %q: want http://, https:// or tcp://", s)
	}
	return nil
}

// candidate is one target considered for an answer, with why it was kept
// or dropped (for the explain endpoint).
type candidate struct {
	t       *target
	healthy bool
	dropped string // "" when still a candidate
	chosen  bool
}

// selection is the outcome of choosing targets for one query.
type selection struct {
	cands    []candidate
	region   string       // the client's region (geo pools), "" if unknown
	matched  netip.Prefix // the region map entry that matched
	scope    int          // ECS scope prefix length the answer is valid for
	failOpen bool         // no target was healthy, so all were used
}

// choose picks the targets for a query of type qtype from client (an
// address, with the number of significant bits: the ECS source prefix
// length, or the full length for a packet's source address).
func (p *Pool) choose(qtype uint16, client netip.Addr, clientBits int, regions *RegionMap) selection {
	var sel selection
	sel.cands = make([]candidate, 0, len(p.targets))
	healthyN := 0
	for _, t := range p.targets {
		c := candidate{t: t, healthy: t.healthy.Load()}
		switch {
		case qtype == dns.TypeA && !t.Addr.Is4(), qtype == dns.TypeAAAA && !t.Addr.Is6():
			c.dropped = "other address family"
		case !c.healthy:
			c.dropped = "unhealthy"
		default:
			healthyN++
		}
		sel.cands = append(sel.cands, c)
	}
	if healthyN == 0 {
		// Nothing is healthy: answer with every target of the family rather
		// than nothing (a health checker that cannot reach anything is more
		// likely broken than every target at once), as Route 53 does.
		for i := range sel.cands {
			if sel.cands[i].dropped == "unhealthy" {
				sel.cands[i].dropped = ""
				sel.failOpen = true
			}
		}
	}
	if p.policy == PolicyGeo && regions != nil && client.IsValid() {
		sel.region, sel.matched, sel.scope = regions.Lookup(client, clientBits)
		inRegion := 0
		for _, c := range sel.cands {
			if c.dropped == "" && sel.region != "" && c.t.Region == sel.region {
				inRegion++
			}
		}
		if inRegion > 0 {
			for i := range sel.cands {
				if sel.cands[i].dropped == "" && sel.cands[i].t.Region != sel.region {
					sel.cands[i].dropped = "other region"
				}
			}
		} else if sel.region != "" {
			// No healthy target in the client's region: fall back to all.
			for _, r := range regions.fallback[sel.region] {
				n := 0
				for _, c := range sel.cands {
					if c.dropped == "" && c.t.Region == r {
						n++
					}
				}
				if n > 0 {
					for i := range sel.cands {
						if sel.cands[i].dropped == "" && sel.cands[i].t.Region != r {
							sel.cands[i].dropped = "other region (fallback to " + r + ")"
						}
					}
					break
				}
			}
		}
	}
	count := p.count
	var idx []int
	for i, c := range sel.cands {
		if c.dropped == "" {
			idx = append(idx, i)
		}
	}
	if count >= len(idx) {
		for _, i := range idx {
			sel.cands[i].chosen = true
		}
		if len(idx) > 1 {
			// Rotate so clients that take the first record spread out.
			k := rand.IntN(len(idx))
			idx = append(idx[k:], idx[:k]...)
		}
		sel.order(idx)
		return sel
	}
	// Weighted draw without replacement.
	picked := make([]int, 0, count)
	for len(picked) < count {
		total := 0
		for _, i := range idx {
			total += sel.cands[i].t.weight()
		}
		r := rand.IntN(total)
		for j, i := range idx {
			r -= sel.cands[i].t.weight()
			if r < 0 {
				picked = append(picked, i)
				sel.cands[i].chosen = true
				idx = slices.Delete(idx, j, j+1)
				break
			}
		}
	}
	for _, i := range idx {
		sel.cands[i].dropped = "not drawn (weight " + fmt.Sprint(sel.cands[i].t.weight()) + ")"
	}
	sel.order(picked)
	return sel
}

// order moves the chosen candidates, in the given order, to the front.
func (s *selection) order(idx []int) {
	out := make([]candidate, 0, len(s.cands))
	for _, i := range idx {
		out = append(out, s.cands[i])
	}
	for _, c := range s.cands {
		if !c.chosen {
			out = append(out, c)
		}
	}
	s.cands = out
}

// records returns the chosen targets as A or AAAA records named qname.
func (s *selection) records(qname string, ttl uint32) []dns.RR {
	var rrs []dns.RR
	for _, c := range s.cands {
		if !c.chosen {
			break
		}
		rrs = append(rrs, addrRecord(qname, ttl, c.t.Addr))
	}
	return rrs
}

func addrRecord(name string, ttl uint32, a netip.Addr) dns.RR {
	if a.Is4() {
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: a.AsSlice()}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: a.AsSlice()}
}

func (t *target) weight() int {
	if t.Weight <= 0 {
		return 1
	}
	return t.Weight
}

// transferRecords are the pool's records in zone transfers: every healthy
// target (all of them when none is), since a secondary cannot steer.
func (p *Pool) transferRecords() []dns.RR {
	var rrs []dns.RR
	for _, fam := range []uint16{dns.TypeA, dns.TypeAAAA} {
		any := false
		for _, t := range p.targets {
			if (fam == dns.TypeA) == t.Addr.Is4() && t.healthy.Load() {
				any = true
			}
		}
		for _, t := range p.targets {
			if (fam == dns.TypeA) == t.Addr.Is4() && (t.healthy.Load() || !any) {
				rrs = append(rrs, addrRecord(p.name, p.ttl, t.Addr))
			}
		}
	}
	return rrs
}

// RegionMap maps client subnets to regions (longest prefix wins), for geo
// steering with EDNS Client Subnet (RFC 7871).
type RegionMap struct {
	entries  []regionEntry // longest prefix first
	fallback map[string][]string
}

type regionEntry struct {
	prefix netip.Prefix
	region string
}

// NewRegionMap builds a map from "prefix=region" entries, e.g.
// "198.51.100.0/24=eu". fallback lists, per region, the regions to try in
// order when the client's region has no healthy target (before any
// region); it may be nil.
func NewRegionMap(entries []string, fallback map[string][]string) (*RegionMap, error) {
	m := &RegionMap{fallback: fallback}
	seen := map[netip.Prefix]bool{}
	for _, e := range entries {
		p, region, ok := strings.Cut(e, "=")
		if !ok || strings.TrimSpace(region) == "" {
			return nil, fmt.Errorf("nameserver: region map entry %q: want prefix=region", e)
		}
		prefix, err := netip.ParsePrefix(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("nameserver: region map entry %q: %w", e, err)
		}
		prefix = prefix.Masked()
		if seen[prefix] {
			return nil, fmt.Errorf("nameserver: region map entry %q: prefix listed twice", e)
		}
		seen[prefix] = true
		m.entries = append(m.entries, regionEntry{prefix: prefix, region: strings.TrimSpace(region)})
	}
	slices.SortStableFunc(m.entries, func(a, b regionEntry) int { return b.prefix.Bits() - a.prefix.Bits() })
	return m, nil
}

// Lookup returns the region of the client subnet addr/bits, the map entry
// that matched, and the ECS scope prefix length the answer is valid for:
// the shortest prefix of the client's address that no other map entry
// splits (RFC 7871 §7.2.1). A scope longer than bits tells the resolver
// that the source prefix was too short to decide.
func (m *RegionMap) Lookup(addr netip.Addr, bits int) (region string, matched netip.Prefix, scope int) {
	addr = addr.Unmap()
	if bits > addr.BitLen() || bits < 0 {
		bits = addr.BitLen()
	}
	src, _ := addr.Prefix(bits)
	for _, e := range m.entries {
		if e.prefix.Addr().Is4() == addr.Is4() && e.prefix.Bits() <= bits && e.prefix.Contains(src.Addr()) {
			region, matched = e.region, e.prefix
			break
		}
	}
	scope = matched.Bits()
	if !matched.IsValid() {
		scope = 0
	}
	// Entries inside the matched prefix (or anywhere, when nothing
	// matched) that answer differently must lie outside the scope.
	for _, e := range m.entries {
		if e.prefix.Addr().Is4() != addr.Is4() || e.prefix == matched || e.prefix.Bits() <= scope {
			continue
		}
		if matched.IsValid() && !matched.Overlaps(e.prefix) {
			continue
		}
		if e.region == region {
			continue
		}
		if src.Overlaps(e.prefix) {
			// The entry lies inside the client's subnet: the subnet is too
			// coarse to decide, so the scope is the entry's length.
			scope = max(scope, e.prefix.Bits())
		} else {
			// Disjoint: the scope must reach the first bit where they differ.
			scope = max(scope, commonPrefixLen(e.prefix.Addr(), src.Addr())+1)
		}
	}
	return region, matched, scope
}

func commonPrefixLen(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		n += bits.LeadingZeros8(d)
		break
	}
	if a.Is4() {
		n -= 96
	}
	return max(n, 0)
}

// ParseTarget parses a target spec "ID ADDRESS [region=R] [weight=N]
// [health=URL]", e.g. "edge-eu 192.0.2.10 region=eu weight=2
// health=http://192.0.2.10:8081/healthz".
func ParseTarget(spec string) (Target, error) {
	f := strings.Fields(spec)
	if len(f) < 2 {
		return Target{}, fmt.Errorf("nameserver: target %q: want \"ID ADDRESS [region=R] [weight=N] [health=URL]\"", spec)
	}
	addr, err := netip.ParseAddr(f[1])
	if err != nil {
		return Target{}, fmt.Errorf("nameserver: target %q: address: %w", spec, err)
	}
	if addr.Zone() != "" {
		return Target{}, fmt.Errorf("nameserver: target %q: address with a zone", spec)
	}
	t := Target{ID: f[0], Addr: addr.Unmap()}
	for _, kv := range f[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return Target{}, fmt.Errorf("nameserver: target %q: %q is not key=value", spec, kv)
		}
		switch k {
		case "region":
			t.Region = v
		case "weight":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1_000_000 {
				return Target{}, fmt.Errorf("nameserver: target %q: weight %q: want 0 to 1000000", spec, v)
			}
			t.Weight = n
		case "health":
			if err := checkHealthURL(v); err != nil {
				return Target{}, fmt.Errorf("nameserver: target %q: %w", spec, err)
			}
			t.Health = v
		default:
			return Target{}, fmt.Errorf("nameserver: target %q: unknown key %q (want region, weight or health)", spec, k)
		}
	}
	return t, nil
}
