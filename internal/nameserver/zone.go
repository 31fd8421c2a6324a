package nameserver

import (
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"
)

// MaxZoneRecords bounds the records one zone may hold, so that a runaway
// $GENERATE or a huge file cannot exhaust memory.
const MaxZoneRecords = 5_000_000

// Zone is an immutable, parsed zone: its records indexed by owner name.
// A new version of a zone is a new Zone; readers holding the old one keep
// a consistent view (the server swaps versions atomically).
type Zone struct {
	Origin  string   // canonical (lower case, fully qualified)
	SOA     *dns.SOA // the apex SOA as loaded
	records []dns.RR // every static record except the SOA, in load order
	nodes   map[string]*node
	hasCuts bool // some non-apex name holds NS records (a delegation)
}

// node is one owner name in a zone. A node without rrsets is an empty
// non-terminal: it exists (NODATA, not NXDOMAIN) because names below it do.
type node struct {
	name   string
	rrsets map[uint16][]dns.RR
	cut    bool  // NS records below the apex: a zone cut
	pool   *Pool // dynamic A/AAAA records, or nil
}

// ParseZone parses RFC 1035 zone text for origin. The text must hold
// exactly one SOA, at the apex, and NS records at the apex. $INCLUDE is
// refused (zone text may come from untrusted sources: use several files
// instead). file names the text in error messages.
func ParseZone(origin string, r io.Reader, file string) (*Zone, error) {
	rrs, err := parseRecords(origin, r, file)
	if err != nil {
		return nil, err
	}
	return buildZone(origin, rrs, nil)
}

// parseRecords reads every record of zone text for origin.
func parseRecords(origin string, r io.Reader, file string) ([]dns.RR, error) {
	origin = dns.CanonicalName(origin)
	if _, ok := dns.IsDomainName(origin); !ok {
		return nil, fmt.Errorf("nameserver: zone %q: not a domain name", origin)
	}
	zp := dns.NewZoneParser(r, origin, file)
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if len(rrs) >= MaxZoneRecords {
			return nil, fmt.Errorf("nameserver: zone %s: more than %d records", origin, MaxZoneRecords)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("nameserver: zone %s: %w", origin, err)
	}
	return rrs, nil
}

// buildZone indexes records (and the owner names of dynamic pools) into a
// Zone, checking what a zone must satisfy.
func buildZone(origin string, rrs []dns.RR, pools []*Pool) (*Zone, error) {
	origin = dns.CanonicalName(origin)
	z := &Zone{Origin: origin, nodes: make(map[string]*node)}
	get := func(name string) *node {
		n := z.nodes[name]
		if n == nil {
			n = &node{name: name}
			z.nodes[name] = n
			// Ancestors up to the apex exist too (empty non-terminals).
			for p := parentName(name); p != "" && dns.IsSubDomain(origin, p) && z.nodes[p] == nil; p = parentName(p) {
				z.nodes[p] = &node{name: p}
			}
		}
		return n
	}
	get(origin)
	seen := make(map[string]struct{}, len(rrs))
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			return nil, fmt.Errorf("nameserver: zone %s: %s: only class IN is served", origin, h.Name)
		}
		h.Name = dns.CanonicalName(h.Name)
		if !dns.IsSubDomain(origin, h.Name) {
			return nil, fmt.Errorf("nameserver: zone %s: %s is outside the zone", origin, h.Name)
		}
		switch h.Rrtype {
		case dns.TypeSOA:
			if h.Name != origin {
				return nil, fmt.Errorf("nameserver: zone %s: SOA at %s, not at the apex", origin, h.Name)
			}
			// A later SOA replaces an earlier one (a file over generated text).
			z.SOA = rr.(*dns.SOA)
			continue
		case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeIXFR, dns.TypeAXFR, dns.TypeANY:
			return nil, fmt.Errorf("nameserver: zone %s: %s: type %s cannot be in a zone", origin, h.Name, dns.TypeToString[h.Rrtype])
		}
		key := rrKey(rr)
		if _, dup := seen[key]; dup {
			continue // RFC 2181 §5: an RRset holds no duplicates
		}
		seen[key] = struct{}{}
		n := get(h.Name)
		if n.rrsets == nil {
			n.rrsets = make(map[uint16][]dns.RR, 2)
		}
		n.rrsets[h.Rrtype] = append(n.rrsets[h.Rrtype], rr)
		z.records = append(z.records, rr)
	}
	if z.SOA == nil {
		return nil, fmt.Errorf("nameserver: zone %s: no SOA record at the apex", origin)
	}
	for _, p := range pools {
		n := get(p.name)
		if n.pool != nil {
			return nil, fmt.Errorf("nameserver: zone %s: two pools at %s", origin, p.name)
		}
		n.pool = p
	}
	apex := z.nodes[origin]
	if len(apex.rrsets[dns.TypeNS]) == 0 {
		return nil, fmt.Errorf("nameserver: zone %s: no NS records at the apex", origin)
	}
	for name, n := range z.nodes {
		if len(n.rrsets[dns.TypeCNAME]) > 0 {
			if len(n.rrsets[dns.TypeCNAME]) > 1 {
				return nil, fmt.Errorf("nameserver: zone %s: %s has more than one CNAME", origin, name)
			}
			if len(n.rrsets) > 1 || n.pool != nil || name == origin {
				return nil, fmt.Errorf("nameserver: zone %s: %s has a CNAME and other data (RFC 1034 §3.6.2)", origin, name)
			}
		}
		if name != origin && len(n.rrsets[dns.TypeNS]) > 0 {
			n.cut = true
			z.hasCuts = true
		}
	}
	// Keep the SOA's TTL and the RRset TTLs consistent (RFC 2181 §5.2):
	// every record of an RRset takes the first record's TTL.
	for _, n := range z.nodes {
		for _, set := range n.rrsets {
			for _, rr := range set[1:] {
				rr.Header().Ttl = set[0].Header().Ttl
			}
		}
	}
	return z, nil
}

// Records returns the zone's static records, the SOA first, in the order
// they were loaded. The records are shared: do not modify them.
func (z *Zone) Records() []dns.RR {
	return append([]dns.RR{z.SOA}, z.records...)
}

// Len returns the number of static records, SOA included.
func (z *Zone) Len() int { return len(z.records) + 1 }

// parentName returns name without its first label, or "" for the root.
func parentName(name string) string {
	if name == "." || name == "" {
		return ""
	}
	i, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// rrKey is a record's identity for duplicate detection and zone diffs:
// its text without the TTL, owner name in lower case.
func rrKey(rr dns.RR) string {
	s := rr.String()
	// "owner\tTTL\tclass\ttype\trdata": drop the TTL field.
	i := strings.IndexByte(s, '\t')
	if i < 0 {
		return s
	}
	j := strings.IndexByte(s[i+1:], '\t')
	if j < 0 {
		return s
	}
	return strings.ToLower(s[:i]) + s[i+1+j:]
}

// ZoneText formats records as zone file text, one per line.
func ZoneText(rrs []dns.RR) string {
	var b strings.Builder
	for _, rr := range rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return b.String()
}
