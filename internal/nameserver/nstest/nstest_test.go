package nstest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestHierarchyWalk walks root → TLD → platform zone by hand, following
// referrals and glue on the hierarchy's port, as a resolver does.
func TestHierarchyWalk(t *testing.T) {
	h := StartHierarchy(t, Options{})
	server := h.RootHints[0]
	name := "www." + h.Zone
	for hop := 0; hop < 5; hop++ {
		r, err := Query(server, name, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) > 0 {
			if !r.Authoritative {
				t.Fatalf("answer without AA: %v", r)
			}
			a, ok := r.Answer[0].(*dns.A)
			if !ok || a.A.String() != "127.0.0.10" {
				t.Fatalf("answer %v", r.Answer)
			}
			if hop != 2 {
				t.Fatalf("answered after %d referrals, want 2", hop)
			}
			return
		}
		if r.Authoritative || len(r.Ns) == 0 {
			t.Fatalf("hop %d: not a referral: %v", hop, r)
		}
		var glue string
		for _, rr := range r.Extra {
			if a, ok := rr.(*dns.A); ok {
				glue = a.A.String()
			}
		}
		if glue == "" {
			t.Fatalf("hop %d: referral without glue: %v", hop, r)
		}
		server = glue + ":" + strings.Split(server, ":")[1]
	}
	t.Fatal("no answer after 5 hops")
}

// TestDigWalk does the same walk with dig, the reference client.
func TestDigWalk(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed: apt-get install dnsutils")
	}
	h := StartHierarchy(t, Options{})
	port := strings.Split(h.RootAddr, ":")[1]
	for _, c := range []struct{ server, want string }{
		{h.Layout.RootIP.String(), "ns1.nic.test."},
		{h.Layout.TLDIP.String(), "ns1.blueprint.test."},
		{h.Layout.AuthIP.String(), "127.0.0.10"},
	} {
		out, err := exec.Command(dig, "+norec", "+time=2", "+tries=1", "-p", port, "@"+c.server, "www.blueprint.test.", "A").CombinedOutput()
		if err != nil {
			t.Fatalf("dig @%s: %v\n%s", c.server, err, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Fatalf("dig @%s: want %q in\n%s", c.server, c.want, out)
		}
	}
}
