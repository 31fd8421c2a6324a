package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/blueprint-media/blueprint/internal/nameserver/nstest"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// These tests run Blueprint's resolver against the real hierarchy of
// internal/nameserver (root → TLD → platform zone, nstest), drive it with
// dig, and compare its answers with Unbound's, the reference resolver,
// walking the same hierarchy.

// startUnbound runs a throwaway Unbound (iterator only, QNAME minimisation
// on, one thread) on a free port, with stub-zones for every zone of h,
// and returns its address. It is stopped when the test ends.
func startUnbound(t testing.TB, h *nstest.Hierarchy) string {
	t.Helper()
	bin, err := exec.LookPath("unbound")
	if err != nil {
		bin = "/usr/sbin/unbound"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("unbound not found: install Debian's unbound package")
		}
	}
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := fmt.Sprintf(`server:
    interface: 127.0.0.1@%[1]d
    port: %[1]d
    do-ip6: no
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: %[2]q
    pidfile: %[4]q
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: 1
    so-reuseport: no
    module-config: "iterator"
    qname-minimisation: yes
    minimal-responses: yes
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
remote-control:
    control-enable: no
%[3]s`, port, dir, h.UnboundStubs(), filepath.Join(dir, "unbound.pid"))
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", path)
	stderr := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start unbound: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := new(dns.Msg)
		m.SetQuestion(h.Zone, dns.TypeSOA)
		c := &dns.Client{Timeout: 500 * time.Millisecond}
		if r, _, err := c.Exchange(m, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("unbound exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound did not answer on %s: %s", addr, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuffer collects a process's output; safe to read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// conformanceZones returns the platform zone's records, the extra zones
// and the queries that exercise them: positive answers, NXDOMAIN, NODATA,
// CNAME chains (in zone, across zones, dangling), wildcards, empty
// non-terminals and delegations, generated from a fixed seed.
func conformanceZones(zone string) (records string, extra map[string]string, queries []dns.Question) {
	rng := rand.New(rand.NewPCG(7, 9))
	var b, other, sub strings.Builder
	b.WriteString(nstest.DefaultRecords)
	q := func(name string, t uint16) {
		queries = append(queries, dns.Question{Name: dns.Fqdn(name), Qtype: t, Qclass: dns.ClassINET})
	}
	const hosts = 40
	for i := range hosts {
		fmt.Fprintf(&b, "h%d 300 IN A 127.1.%d.%d\n", i, i/200, i%200+1)
		q(fmt.Sprintf("h%d.%s", i, zone), dns.TypeA)
		if i%3 == 0 {
			fmt.Fprintf(&b, "h%d 300 IN AAAA fd00::1:%x\n", i, i)
			q(fmt.Sprintf("h%d.%s", i, zone), dns.TypeAAAA)
		} else if i%3 == 1 {
			q(fmt.Sprintf("h%d.%s", i, zone), dns.TypeAAAA) // NODATA
		}
		if i%5 == 0 {
			fmt.Fprintf(&b, "h%d 300 IN TXT \"host %d\"\n", i, i)
			q(fmt.Sprintf("h%d.%s", i, zone), dns.TypeTXT)
		}
		if i%7 == 0 {
			q(fmt.Sprintf("h%d.%s", i, zone), dns.TypeMX) // NODATA
		}
	}
	for i := range 15 {
		fmt.Fprintf(&b, "c%d 120 IN CNAME h%d\n", i, rng.IntN(hosts))
		fmt.Fprintf(&b, "cc%d 120 IN CNAME c%d\n", i, i)
		q(fmt.Sprintf("c%d.%s", i, zone), dns.TypeA)
		q(fmt.Sprintf("cc%d.%s", i, zone), dns.TypeA)
		q(fmt.Sprintf("cc%d.%s", i, zone), dns.TypeCNAME)
	}
	for i := range 5 {
		fmt.Fprintf(&b, "ccc%d 120 IN CNAME cc%d\n", i, i)
		q(fmt.Sprintf("ccc%d.%s", i, zone), dns.TypeA)
	}
	for i := range 10 {
		fmt.Fprintf(&other, "o%d 300 IN A 127.2.0.%d\n", i, i+1)
		fmt.Fprintf(&b, "x%d 120 IN CNAME o%d.other.test.\n", i, i)
		q(fmt.Sprintf("x%d.%s", i, zone), dns.TypeA)
		q(fmt.Sprintf("o%d.other.test.", i), dns.TypeA)
		fmt.Fprintf(&sub, "s%d 300 IN A 127.3.0.%d\n", i, i+1)
		q(fmt.Sprintf("s%d.sub.%s", i, zone), dns.TypeA)
		q(fmt.Sprintf("nx%d.%s", i, zone), dns.TypeA)
		q(fmt.Sprintf("deep.nx%d.%s", i, zone), dns.TypeAAAA)
	}
	fmt.Fprintf(&other, "back 120 IN CNAME chain.%s\n", zone)
	fmt.Fprintf(&b, "xn 120 IN CNAME missing.other.test.\n")
	fmt.Fprintf(&b, "sub 300 IN NS ns1.%s\n", zone)
	for _, n := range []string{"www", "alias", "chain", "dangling", "mx", "nowhere", "a.wild", "b.c.wild", "ent.deep", "deep", "xn"} {
		q(n+"."+zone, dns.TypeA)
	}
	q("mail."+zone, dns.TypeMX)
	q("txt."+zone, dns.TypeTXT)
	q("_http._tcp."+zone, dns.TypeSRV)
	q(zone, dns.TypeCAA)
	q(zone, dns.TypeSOA)
	q(zone, dns.TypeNS)
	q(zone, dns.TypeA)
	q("ent.deep."+zone, dns.TypeTXT)
	q("back.other.test.", dns.TypeA)
	q("missing.other.test.", dns.TypeA)
	q("other.test.", dns.TypeNS)
	q("sub."+zone, dns.TypeSOA)
	q("nx.sub."+zone, dns.TypeA)
	q("nope.test.", dns.TypeA)
	q("test.", dns.TypeSOA)
	q("nope.", dns.TypeA)
	extra = map[string]string{"other.test.": other.String(), "sub." + zone: sub.String()}
	return b.String(), extra, queries
}

// normalized is a reply reduced to what two correct resolvers must agree
// on: the rcode, the answer records (lowercased, TTLs zeroed, sorted) and
// the owner of the SOA in a negative reply.
func normalized(m *dns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rcode=%s\n", dns.RcodeToString[m.Rcode])
	for _, s := range rrStrings(m.Answer) {
		b.WriteString(strings.ToLower(s) + "\n")
	}
	if m.Rcode == dns.RcodeNameError || len(m.Answer) == 0 || !answersQuestion(m) {
		for _, rr := range m.Ns {
			if rr.Header().Rrtype == dns.TypeSOA {
				fmt.Fprintf(&b, "soa=%s\n", strings.ToLower(rr.Header().Name))
			}
		}
	}
	return b.String()
}

// answersQuestion reports whether the answer holds the type asked for.
func answersQuestion(m *dns.Msg) bool {
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == m.Question[0].Qtype {
			return true
		}
	}
	return false
}

func exchange(t testing.TB, addr string, q dns.Question) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.Question = []dns.Question{q}
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s @%s: %v", q.Name, dns.TypeToString[q.Qtype], addr, err)
	}
	return r
}

func TestSameAnswersAsUnbound(t *testing.T) {
	records, extra, queries := conformanceZones("blueprint.test.")
	h := nstest.StartHierarchy(t, nstest.Options{Records: records, ExtraZones: extra})
	r, err := New(Config{Addr: "127.0.0.1:0", RootHints: h.RootHints, Port: h.Port}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	unbound := startUnbound(t, h)

	counts := map[string]int{}
	for pass := range 2 { // the second pass is answered from both caches
		diffs := 0
		for _, q := range queries {
			ours, ref := exchange(t, r.Addr(), q), exchange(t, unbound, q)
			a, b := normalized(ours), normalized(ref)
			if a != b {
				diffs++
				t.Errorf("pass %d, %s %s:\nblueprint:\n%sunbound:\n%s", pass, q.Name, dns.TypeToString[q.Qtype], a, b)
			}
			if pass == 0 {
				switch {
				case ref.Rcode == dns.RcodeNameError:
					counts["NXDOMAIN"]++
				case ref.Rcode != dns.RcodeSuccess:
					counts[dns.RcodeToString[ref.Rcode]]++
				case len(ref.Answer) == 0:
					counts["NODATA"]++
				case len(ref.Answer) > 1 && ref.Answer[0].Header().Rrtype == dns.TypeCNAME:
					counts["CNAME chain"]++
				default:
					counts["positive"]++
				}
			}
		}
		if diffs > 0 {
			t.Fatalf("pass %d: %d of %d answers differ from Unbound's", pass, diffs, len(queries))
		}
	}
	t.Logf("%d questions, identical to Unbound in both passes: %v", len(queries), counts)
	for _, k := range []string{"positive", "NXDOMAIN", "NODATA", "CNAME chain"} {
		if counts[k] == 0 {
			t.Errorf("the generated set has no %s answer", k)
		}
	}
}

// dig runs dig against addr and returns its status and answer lines.
func dig(t testing.TB, addr, name, qtype string) (status string, answer []string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("dig", "@"+host, "-p", port, "+tries=1", "+time=5", "+nocookie", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
	}
	section := ""
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "status: "); i >= 0 {
			status = strings.TrimSuffix(strings.Fields(line[i+8:])[0], ",")
		}
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			section = "answer"
		case strings.HasPrefix(line, ";;") || line == "":
			section = ""
		case section == "answer":
			f := strings.Fields(line)
			if len(f) >= 5 {
				answer = append(answer, strings.ToLower(f[0])+" "+strings.Join(f[2:], " "))
			}
		}
	}
	slices.Sort(answer)
	return status, answer
}

func TestDigThroughHierarchy(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig not found: install Debian's dnsutils package")
	}
	records, extra, _ := conformanceZones("blueprint.test.")
	h := nstest.StartHierarchy(t, nstest.Options{Records: records, ExtraZones: extra})
	r, err := New(Config{Addr: "127.0.0.1:0", RootHints: h.RootHints, Port: h.Port}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	unbound := startUnbound(t, h)

	// www resolves through root → TLD → authoritative.
	status, answer := dig(t, r.Addr(), "www.blueprint.test", "A")
	if status != "NOERROR" || !slices.Equal(answer, []string{"www.blueprint.test. IN A 127.0.0.10"}) {
		t.Fatalf("dig www.blueprint.test A: %s %v", status, answer)
	}
	for _, c := range [][2]string{
		{"chain.blueprint.test", "A"}, {"x3.blueprint.test", "A"}, {"s2.sub.blueprint.test", "A"},
		{"nope.blueprint.test", "A"}, {"www.blueprint.test", "MX"}, {"dangling.blueprint.test", "A"},
		{"_http._tcp.blueprint.test", "SRV"}, {"txt.blueprint.test", "TXT"}, {"q.wild.blueprint.test", "A"},
	} {
		s1, a1 := dig(t, r.Addr(), c[0], c[1])
		s2, a2 := dig(t, unbound, c[0], c[1])
		// dig prints TTLs; drop them (the second field) before comparing.
		strip := func(a []string) []string {
			var out []string
			for _, l := range a {
				f := strings.Fields(l)
				out = append(out, strings.Join(append(f[:1], f[2:]...), " "))
			}
			return out
		}
		if s1 != s2 || !slices.Equal(strip(a1), strip(a2)) {
			t.Errorf("dig %s %s: blueprint %s %v, unbound %s %v", c[0], c[1], s1, a1, s2, a2)
		}
	}
}
