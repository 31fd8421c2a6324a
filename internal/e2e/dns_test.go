package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/config"
)

// dnsLayout is GET /dns/layout on the admin listener.
type dnsLayout struct {
	Zone     string `json:"zone"`
	Port     int    `json:"port"`
	Root     string `json:"root"`
	TLD      string `json:"tld"`
	Auth     string `json:"auth"`
	Resolver string `json:"resolver"`
}

// switchable is a real HTTP server standing for a remote gateway or edge
// whose /healthz can be turned off.
type switchable struct {
	srv  *httptest.Server
	down atomic.Bool
}

func newSwitchable(t *testing.T) *switchable {
	s := &switchable{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// dig runs dig and returns its output.
func dig(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dig", append([]string{"+time=3", "+tries=2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// digShort returns the sorted answer data of dig +short.
func digShort(t *testing.T, args ...string) []string {
	t.Helper()
	out := strings.TrimSpace(dig(t, append([]string{"+short"}, args...)...))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// TestDNSHierarchy runs the whole platform with its DNS roles and checks,
// with dig: resolution through root → TLD → authoritative via Blueprint's
// resolver, the walk by hand, ECS steering to two edges with the right
// scope, a gateway leaving the answers when it stops, and the explain
// endpoint.
func TestDNSHierarchy(t *testing.T) {
	requireTool(t, "dig")
	edgeUS := newSwitchable(t)
	gw2 := newSwitchable(t)
	p := startPlatform(t, func(c *config.Config) {
		c.DNS.EdgeRegion = "eu"
		c.DNS.Regions = []string{"198.51.100.0/24=eu", "203.0.113.0/24=us", "127.0.0.0/8=eu"}
		c.DNS.Edges = []string{"edge-us 127.0.0.77 region=us health=" + edgeUS.srv.URL + "/healthz"}
		c.DNS.Gateways = []string{"gateway-2 127.0.0.78 health=" + gw2.srv.URL + "/healthz"}
		c.DNS.HealthInterval = 200 * time.Millisecond
	})
	resp, body := get(t, p.urls.Admin+"/dns/layout")
	if resp.StatusCode != 200 {
		t.Fatalf("/dns/layout: %d %s", resp.StatusCode, body)
	}
	var l dnsLayout
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatal(err)
	}
	port := "-p" + strconv.Itoa(l.Port)
	t.Logf("DNS on port %d: root %s, TLD %s, auth %s, resolver %s", l.Port, l.Root, l.TLD, l.Auth, l.Resolver)

	// Through Blueprint's resolver: root → TLD → authoritative.
	if got := digShort(t, port, "@"+l.Resolver, "gateways."+l.Zone, "A"); len(got) != 2 {
		t.Fatalf("gateways via the resolver: %v, want 2 addresses", got)
	}
	out := dig(t, port, "@"+l.Resolver, "www."+l.Zone, "A")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, " ra") {
		t.Fatalf("www via the resolver:\n%s", out)
	}
	out = dig(t, port, "@"+l.Resolver, "nx."+l.Zone, "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "SOA") {
		t.Fatalf("NXDOMAIN via the resolver:\n%s", out)
	}
	// The same walk by hand, one level at a time.
	if out := dig(t, port, "+norec", "@"+l.Root, "www."+l.Zone); !strings.Contains(out, "ns1.nic.test.") || strings.Contains(out, " aa") {
		t.Fatalf("root must refer to the TLD:\n%s", out)
	}
	if out := dig(t, port, "+norec", "@"+l.TLD, "www."+l.Zone); !strings.Contains(out, "ns1."+l.Zone) || !strings.Contains(out, l.Auth) {
		t.Fatalf("TLD must refer to the platform zone with glue:\n%s", out)
	}
	if out := dig(t, port, "+norec", "@"+l.Auth, "www."+l.Zone); !strings.Contains(out, "flags: qr aa") {
		t.Fatalf("auth must answer authoritatively:\n%s", out)
	}
	// TCP too.
	if got := digShort(t, port, "+tcp", "@"+l.Auth, "edges."+l.Zone); len(got) != 2 {
		t.Fatalf("edges over TCP: %v", got)
	}

	// ECS: two client subnets, two edges, scope /24.
	for _, c := range []struct{ subnet, want string }{
		{"198.51.100.0/24", "127.0.0.1"}, {"203.0.113.0/24", "127.0.0.77"},
	} {
		out := dig(t, port, "+norec", "@"+l.Auth, "+subnet="+c.subnet, "edge."+l.Zone)
		if !strings.Contains(out, "CLIENT-SUBNET: "+c.subnet+"/24") {
			t.Fatalf("subnet %s: reply scope is not /24:\n%s", c.subnet, out)
		}
		if !strings.Contains(out, "IN\tA\t"+c.want) {
			t.Fatalf("subnet %s: want edge %s:\n%s", c.subnet, c.want, out)
		}
	}

	// Health flip: gateway-2 stops; it leaves the answers after its
	// failed checks, and comes back.
	gw2.srv.Close()
	deadline := time.Now().Add(30 * time.Second)
	stopped := time.Now()
	for {
		got := digShort(t, port, "+norec", "@"+l.Auth, "gateways."+l.Zone)
		if len(got) == 1 && got[0] == "127.0.0.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stopped gateway still answered: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stopped gateway left the answers after %v", time.Since(stopped).Round(10*time.Millisecond))

	// Explain says why.
	resp, body = get(t, p.urls.Admin+"/dns/explain?name=gateways."+l.Zone+"&type=A")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"dropped": "unhealthy"`) {
		t.Fatalf("explain: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, p.urls.Admin+"/dns/explain?name=edge."+l.Zone+"&client=203.0.113.0/24")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"region": "us"`) {
		t.Fatalf("explain edge: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, p.urls.Admin+"/dns/explain?name=edge."+l.Zone+"&type=BOGUS")
	if resp.StatusCode != 400 {
		t.Fatalf("explain with a bad type: %d %s", resp.StatusCode, body)
	}
	_, body = get(t, p.urls.Admin+"/metrics")
	for _, m := range []string{`blueprint_nameserver_queries_total{proto="udp",qtype="A",rcode="NOERROR",server="root"}`, `server="auth"`} {
		if !strings.Contains(string(body), m) {
			t.Fatalf("metrics lack %s", m)
		}
	}
}

// TestDNSAddressesMissing: when the DNS addresses are not on this machine
// (macOS has only 127.0.0.1 on loopback), the platform still starts,
// without DNS.
func TestDNSAddressesMissing(t *testing.T) {
	p := startPlatform(t, func(c *config.Config) {
		c.DNS.RootIP = "192.0.2.1" // TEST-NET-1: assigned to no interface here
	})
	if resp, _ := get(t, p.urls.Admin+"/dns/layout"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/dns/layout: %d, want 404 without DNS", resp.StatusCode)
	}
	if resp, _ := get(t, p.urls.Gateway+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway: %d", resp.StatusCode)
	}
}
