package nameserver

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// NameServer is a name server's host name and addresses (glue).
type NameServer struct {
	Name  string
	Addrs []netip.Addr
}

// Delegation is a child zone and the servers it is delegated to.
type Delegation struct {
	Zone string
	NS   []NameServer
}

// SOAParams are the timers of a generated SOA.
type SOAParams struct {
	Serial                         uint32
	Refresh, Retry, Expire, MinTTL uint32
	TTL                            uint32 // TTL of the SOA and the NS records
}

// DefaultSOA are timers for generated zones: TTL 3600, negative TTL 300.
func DefaultSOA(serial uint32) SOAParams {
	return SOAParams{Serial: serial, Refresh: 7200, Retry: 3600, Expire: 1209600, MinTTL: 300, TTL: 3600}
}

// DelegationZone returns zone text for origin, served by self: the SOA,
// the apex NS and its address records (when they are in the zone), and one
// NS set with glue per child. Root and TLD servers serve such zones. extra
// is appended verbatim (absolute names, or relative to origin).
func DelegationZone(origin string, self []NameServer, soa SOAParams, children []Delegation, extra string) string {
	origin = dns.CanonicalName(origin)
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n", origin)
	mbox := "hostmaster." + origin
	if origin == "." {
		mbox = "hostmaster.invalid."
	}
	primary := "invalid."
	if len(self) > 0 {
		primary = dns.Fqdn(self[0].Name)
	}
	fmt.Fprintf(&b, "%s %d IN SOA %s %s %d %d %d %d %d\n", origin, soa.TTL, primary, mbox,
		soa.Serial, soa.Refresh, soa.Retry, soa.Expire, soa.MinTTL)
	glue := map[string]bool{}
	addrs := func(ns NameServer) {
		name := dns.CanonicalName(ns.Name)
		if !dns.IsSubDomain(origin, name) || glue[name] {
			return
		}
		glue[name] = true
		for _, a := range ns.Addrs {
			t := "A"
			if a.Is6() && !a.Is4In6() {
				t = "AAAA"
			}
			fmt.Fprintf(&b, "%s %d IN %s %s\n", name, soa.TTL, t, a.Unmap())
		}
	}
	for _, ns := range self {
		fmt.Fprintf(&b, "%s %d IN NS %s\n", origin, soa.TTL, dns.CanonicalName(ns.Name))
	}
	for _, ns := range self {
		addrs(ns)
	}
	for _, d := range children {
		zone := dns.CanonicalName(d.Zone)
		for _, ns := range d.NS {
			fmt.Fprintf(&b, "%s %d IN NS %s\n", zone, soa.TTL, dns.CanonicalName(ns.Name))
		}
		for _, ns := range d.NS {
			addrs(ns)
		}
	}
	if extra != "" {
		b.WriteString(extra)
		if !strings.HasSuffix(extra, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Layout is where the parts of a local DNS hierarchy listen: one loopback
// address each, all on the same port. Resolvers following referrals send
// every query to that port (glue carries addresses, not ports).
type Layout struct {
	Zone       string     // the platform zone, e.g. "blueprint.test."
	RootIP     netip.Addr // root server
	TLDIP      netip.Addr // server of the platform zone's TLD
	AuthIP     netip.Addr // authoritative server of the platform zone
	ResolverIP netip.Addr // the resolver (not part of the delegations)
	Port       int
}

// DefaultLayout is the all-in-one layout: 127.53.0.1 root, .2 TLD, .3 the
// platform zone, .53 the resolver.
func DefaultLayout(zone string, port int) Layout {
	return Layout{
		Zone:       dns.CanonicalName(zone),
		RootIP:     netip.MustParseAddr("127.53.0.1"),
		TLDIP:      netip.MustParseAddr("127.53.0.2"),
		AuthIP:     netip.MustParseAddr("127.53.0.3"),
		ResolverIP: netip.MustParseAddr("127.53.0.53"),
		Port:       port,
	}
}

// TLD returns the top-level domain of the layout's zone ("test." for
// "blueprint.test.").
func (l Layout) TLD() string {
	labels := dns.SplitDomainName(l.Zone)
	if len(labels) == 0 {
		return "."
	}
	return dns.Fqdn(labels[len(labels)-1])
}

// Names of the layout's servers.
func (l Layout) rootNS() NameServer {
	return NameServer{Name: "a.root-servers." + l.TLD(), Addrs: []netip.Addr{l.RootIP}}
}
func (l Layout) tldNS() NameServer {
	return NameServer{Name: "ns1.nic." + l.TLD(), Addrs: []netip.Addr{l.TLDIP}}
}

// AuthNS is the name server of the platform zone: ns1.<zone>.
func (l Layout) AuthNS() NameServer {
	return NameServer{Name: "ns1." + l.Zone, Addrs: []netip.Addr{l.AuthIP}}
}

// RootZone returns the root zone text: the TLD delegated to the TLD server.
// extraDelegations are further TLDs (glue included).
func (l Layout) RootZone(serial uint32, extra ...Delegation) string {
	return DelegationZone(".", []NameServer{l.rootNS()}, DefaultSOA(serial),
		append([]Delegation{{Zone: l.TLD(), NS: []NameServer{l.tldNS()}}}, extra...), "")
}

// TLDZone returns the TLD zone text: the platform zone delegated to the
// authoritative server, plus extra delegations and records (zone text).
func (l Layout) TLDZone(serial uint32, extra []Delegation, records string) string {
	root := l.rootNS()
	self := fmt.Sprintf("%s 3600 IN A %s\n", dns.CanonicalName(root.Name), l.RootIP)
	return DelegationZone(l.TLD(), []NameServer{l.tldNS()}, DefaultSOA(serial),
		append([]Delegation{{Zone: l.Zone, NS: []NameServer{l.AuthNS()}}}, extra...), self+records)
}

// PlatformZone returns the platform zone's base text: SOA (negative TTL
// 60), NS ns1.<zone> and its address, then records.
func (l Layout) PlatformZone(serial uint32, records string) string {
	soa := DefaultSOA(serial)
	soa.MinTTL = 60
	return DelegationZone(l.Zone, []NameServer{l.AuthNS()}, soa, nil, records)
}

// RootHints returns the root server as host:port, for resolvers.
func (l Layout) RootHints() []string {
	return []string{netip.AddrPortFrom(l.RootIP, uint16(l.Port)).String()}
}
