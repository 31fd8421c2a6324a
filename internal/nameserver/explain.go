package nameserver

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Explanation says how the server answered one query: which zone, which
// records were candidates, which were dropped and why, which region won.
type Explanation struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Client     string            `json:"client"`          // the subnet or address steering used
	ECS        bool              `json:"ecs"`             // sent as EDNS Client Subnet
	Zone       string            `json:"zone,omitempty"`  // zone that answered
	Steps      []string          `json:"steps,omitempty"` // referral, CNAME, wildcard, negative answers
	Pools      []PoolExplanation `json:"pools,omitempty"`
	Rcode      string            `json:"rcode"`
	AA         bool              `json:"authoritative"`
	ECSScope   *int              `json:"ecs_scope,omitempty"`
	Answer     []string          `json:"answer"`
	Authority  []string          `json:"authority"`
	Additional []string          `json:"additional"`
}

// PoolExplanation is the choice made by one dynamic pool.
type PoolExplanation struct {
	Name       string                 `json:"name"`
	Policy     string                 `json:"policy"`
	ClientAddr string                 `json:"client_addr"`
	Region     string                 `json:"region,omitempty"`         // the client's region (geo)
	Matched    string                 `json:"matched_prefix,omitempty"` // region map entry that matched
	Scope      int                    `json:"scope"`                    // ECS scope the answer is valid for
	FailOpen   bool                   `json:"fail_open"`                // no target healthy: all used
	Candidates []CandidateExplanation `json:"candidates"`
}

// CandidateExplanation is one pool target and its fate.
type CandidateExplanation struct {
	ID          string `json:"id"`
	Addr        string `json:"addr"`
	Region      string `json:"region,omitempty"`
	Weight      int    `json:"weight"`
	Healthy     bool   `json:"healthy"`
	HealthURL   string `json:"health_url,omitempty"`
	HealthError string `json:"health_error,omitempty"`
	Chosen      bool   `json:"chosen"`
	Dropped     string `json:"dropped,omitempty"`
}

func (e *Explanation) note(format string, args ...any) {
	e.Steps = append(e.Steps, fmt.Sprintf(format, args...))
}

func (e *Explanation) addSelection(p *Pool, sel selection, addr netip.Addr, bits int, ch *checker) {
	pe := PoolExplanation{
		Name: p.name, Policy: p.policy, ClientAddr: netip.PrefixFrom(addr, bits).String(),
		Region: sel.region, Scope: sel.scope, FailOpen: sel.failOpen,
	}
	if sel.matched.IsValid() {
		pe.Matched = sel.matched.String()
	}
	for _, c := range sel.cands {
		ce := CandidateExplanation{
			ID: c.t.ID, Addr: c.t.Addr.String(), Region: c.t.Region, Weight: c.t.weight(),
			Healthy: c.healthy, HealthURL: c.t.Health, Chosen: c.chosen, Dropped: c.dropped,
		}
		if c.t.Health != "" && !c.healthy {
			ce.HealthError = ch.lastError(c.t.Health)
		}
		pe.Candidates = append(pe.Candidates, ce)
	}
	e.Pools = append(e.Pools, pe)
}

// Explain answers name/qtype as if asked by client and says why. client
// is an address (the query's source, no ECS) or a prefix (sent as EDNS
// Client Subnet from 127.0.0.1); an invalid client means 127.0.0.1.
func (s *Server) Explain(name string, qtype uint16, client string) (*Explanation, error) {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("nameserver: explain: %q is not a domain name", name)
	}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	src := netip.MustParseAddr("127.0.0.1")
	ex := &Explanation{Name: dns.Fqdn(name), Type: typeName(qtype), Client: src.String()}
	if client != "" {
		if strings.Contains(client, "/") {
			p, err := netip.ParsePrefix(client)
			if err != nil {
				return nil, fmt.Errorf("nameserver: explain: client %q: %w", client, err)
			}
			p = p.Masked()
			e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
			if p.Addr().Is6() {
				e.Family = 2
			}
			req.SetEdns0(1232, false)
			req.IsEdns0().Option = append(req.IsEdns0().Option, e)
			ex.Client, ex.ECS = p.String(), true
		} else {
			a, err := netip.ParseAddr(client)
			if err != nil {
				return nil, fmt.Errorf("nameserver: explain: client %q: %w", client, err)
			}
			src = a
			ex.Client = a.String()
		}
	}
	m := s.respond(req, src, ex)
	ex.Rcode = rcodeName(m.Rcode)
	ex.AA = m.Authoritative
	for _, rr := range m.Answer {
		ex.Answer = append(ex.Answer, rr.String())
	}
	for _, rr := range m.Ns {
		ex.Authority = append(ex.Authority, rr.String())
	}
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_SUBNET); ok {
					sc := int(e.SourceScope)
					ex.ECSScope = &sc
				}
			}
			continue
		}
		ex.Additional = append(ex.Additional, rr.String())
	}
	return ex, nil
}

// ExplainHandler serves Explain as JSON: GET ?name=&type=&client=
// (type defaults to A). Bad parameters get 400 with the reason.
func (s *Server) ExplainHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		name, typ, client := q.Get("name"), strings.ToUpper(q.Get("type")), q.Get("client")
		fail := func(msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": msg})
		}
		if name == "" || len(name) > 255 {
			fail("name: required, at most 255 characters")
			return
		}
		if typ == "" {
			typ = "A"
		}
		qtype, ok := dns.StringToType[typ]
		if !ok || qtype == dns.TypeAXFR || qtype == dns.TypeIXFR || qtype == dns.TypeOPT {
			fail(fmt.Sprintf("type: unknown or not a query type: %q", typ))
			return
		}
		if len(client) > 64 {
			fail("client: at most 64 characters")
			return
		}
		ex, err := s.Explain(name, qtype, client)
		if err != nil {
			fail(strings.TrimPrefix(err.Error(), "nameserver: explain: "))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(ex)
	})
}
