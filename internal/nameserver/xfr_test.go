package nameserver

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/blueprint-media/blueprint/internal/testenv"
)

// transferIn runs an AXFR or IXFR (from serial) against addr and returns
// every record received, in order.
func transferIn(t testing.TB, addr, zone string, qtype uint16, serial uint32) []dns.RR {
	t.Helper()
	m := new(dns.Msg)
	if qtype == dns.TypeIXFR {
		m.SetIxfr(zone, serial, "ns1."+zone, "hostmaster."+zone)
	} else {
		m.SetAxfr(zone)
	}
	tr := &dns.Transfer{ReadTimeout: 5 * time.Second}
	ch, err := tr.In(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("transfer: %v", env.Error)
		}
		rrs = append(rrs, env.RR...)
	}
	return rrs
}

func writeZone(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestAXFRAndIXFR(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "example.test.zone")
	writeZone(t, file, testZoneText)
	s := startServer(t, Config{Zones: []ZoneConfig{{Origin: "example.test.", Files: []string{file}}}})

	axfr := transferIn(t, s.Addr(), "example.test.", dns.TypeAXFR, 0)
	z := s.Zone("example.test.")
	if len(axfr) != z.Len()+1 {
		t.Fatalf("AXFR: %d records, want %d (zone + closing SOA)", len(axfr), z.Len()+1)
	}
	if axfr[0].Header().Rrtype != dns.TypeSOA || axfr[len(axfr)-1].Header().Rrtype != dns.TypeSOA {
		t.Fatal("AXFR must start and end with the SOA")
	}

	// One record changed, one added, serial bumped in the file.
	text := strings.Replace(testZoneText, "2024010101", "2024010102", 1)
	text = strings.Replace(text, "mx       60 IN A 192.0.2.25", "mx       60 IN A 192.0.2.26", 1)
	text += "new 60 IN TXT \"added\"\n"
	writeZone(t, file, text)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if serial, _ := s.Serial("example.test."); serial != 2024010102 {
		t.Fatalf("serial %d after reload, want the file's 2024010102", serial)
	}
	ixfr := transferIn(t, s.Addr(), "example.test.", dns.TypeIXFR, 2024010101)
	var got []string
	for _, rr := range ixfr {
		switch v := rr.(type) {
		case *dns.SOA:
			got = append(got, fmt.Sprintf("SOA %d", v.Serial))
		default:
			got = append(got, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	want := []string{
		"SOA 2024010102",
		"SOA 2024010101", "mx.example.test. 60 IN A 192.0.2.25",
		"SOA 2024010102", "mx.example.test. 60 IN A 192.0.2.26", "new.example.test. 60 IN TXT \"added\"",
		"SOA 2024010102",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("IXFR:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Up to date: the SOA alone. Unknown serial: the whole zone.
	if rrs := transferIn(t, s.Addr(), "example.test.", dns.TypeIXFR, 2024010102); len(rrs) != 1 {
		t.Fatalf("IXFR from the current serial: %d records, want 1", len(rrs))
	}
	if rrs := transferIn(t, s.Addr(), "example.test.", dns.TypeIXFR, 2000000000); len(rrs) != s.Zone("example.test.").Len()+1 {
		t.Fatalf("IXFR from an unknown serial: %d records, want the whole zone", len(rrs))
	}
	// A file edited without a serial bump still moves the serial.
	writeZone(t, file, text+"another 60 IN TXT \"x\"\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if serial, _ := s.Serial("example.test."); serial != 2024010103 {
		t.Fatalf("serial %d after an edit without bump, want 2024010103", serial)
	}
	// IXFR over UDP: the SOA, so the client retries on TCP.
	r := query(t, s.Addr(), "example.test", dns.TypeIXFR, func(m *dns.Msg) {
		m.SetIxfr("example.test.", 1, "ns1.example.test.", "hostmaster.example.test.")
	})
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != 2024010103 {
		t.Fatalf("IXFR over UDP: %v", r)
	}
	// A broken file keeps the old version.
	writeZone(t, file, "this is not a zone\n")
	if err := s.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	if r := query(t, s.Addr(), "new.example.test", dns.TypeTXT); len(r.Answer) != 1 {
		t.Fatalf("old version gone after a failed reload: %v", r)
	}
}

func TestTransferACL(t *testing.T) {
	s := startServer(t, Config{TransferAllow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	m := new(dns.Msg)
	m.SetAxfr("example.test.")
	tr := &dns.Transfer{ReadTimeout: 3 * time.Second}
	ch, err := tr.In(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	env := <-ch
	if env.Error == nil {
		t.Fatalf("AXFR from a refused address returned records: %v", env.RR)
	}
	// A zone we do not serve: NOTAUTH.
	s2 := startServer(t, Config{})
	m.SetAxfr("other.test.")
	tr = &dns.Transfer{ReadTimeout: 3 * time.Second}
	ch, err = tr.In(m, s2.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if env := <-ch; env.Error == nil {
		t.Fatal("AXFR of a zone not served succeeded")
	}
}

// TestKnotSecondary runs a real Knot DNS secondary of our zone: it
// transfers the zone (AXFR), then a one-record change reaches it through
// NOTIFY and IXFR, and so does a health change of a pool target.
func TestKnotSecondary(t *testing.T) {
	knotd := "/usr/sbin/knotd"
	if _, err := os.Stat(knotd); err != nil {
		if knotd, err = exec.LookPath("knotd"); err != nil {
			t.Fatal("knotd is not installed: apt-get install knot (make test installs it as root)")
		}
	}
	dir := t.TempDir()
	knotPort := testenv.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	file := filepath.Join(dir, "example.test.zone")
	writeZone(t, file, testZoneText)
	gw := newHealthTarget(t)
	health := HealthConfig{Interval: 200 * time.Millisecond, UnhealthyAfter: 1, HealthyAfter: 1}
	s := startServer(t, Config{
		Health: health, Notify: []string{knotAddr},
		Zones: []ZoneConfig{{Origin: "example.test.", Files: []string{file}, Pools: []PoolConfig{{
			Name: "gw", Targets: []Target{
				{ID: "gw-1", Addr: netip.MustParseAddr("192.0.2.11"), Health: gw.url()},
				{ID: "gw-2", Addr: netip.MustParseAddr("192.0.2.12")},
			},
		}}}},
	})
	_, ourPort, _ := strings.Cut(s.Addr(), ":")

	kdir := filepath.Join(dir, "knot")
	os.MkdirAll(kdir, 0o755)
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "%[1]s/knot.sock"
log:
  - target: stderr
    any: info
database:
    storage: "%[1]s"
remote:
  - id: primary
    address: 127.0.0.1@%[3]s
acl:
  - id: notify_from_primary
    address: 127.0.0.0/8
    action: notify
template:
  - id: default
    storage: "%[1]s"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
zone:
  - domain: example.test.
    master: primary
    acl: notify_from_primary
`, kdir, knotPort, ourPort)
	confPath := filepath.Join(kdir, "knot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(kdir, "knot.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(knotd, "-c", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	knotLog := func() string { b, _ := os.ReadFile(filepath.Join(kdir, "knot.log")); return string(b) }

	// waitKnot polls Knot until check passes (a hang guard, not a timing
	// assertion: convergence is event driven by NOTIFY).
	waitKnot := func(what string, check func(*dns.Msg) bool, name string, qtype uint16) {
		t.Helper()
		c := &dns.Client{Timeout: time.Second}
		deadline := time.Now().Add(60 * time.Second)
		for {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			r, _, err := c.Exchange(m, knotAddr)
			if err == nil && check(r) {
				return
			}
			select {
			case <-exited:
				t.Fatalf("knotd exited:\n%s", knotLog())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("knot never got %s (last %v %v):\n%s", what, r, err, knotLog())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	serial, _ := s.Serial("example.test.")
	waitKnot("the zone (AXFR)", func(r *dns.Msg) bool {
		return r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && r.Answer[0].(*dns.SOA).Serial == serial
	}, "example.test.", dns.TypeSOA)
	waitKnot("www", func(r *dns.Msg) bool { return len(r.Answer) == 2 }, "www.example.test.", dns.TypeA)
	waitKnot("the pool", func(r *dns.Msg) bool { return len(r.Answer) == 2 }, "gw.example.test.", dns.TypeA)
	axfrs := testutil.ToFloat64(s.metrics.transfers.WithLabelValues("auth", "axfr", "ok"))
	if axfrs < 1 {
		t.Fatalf("knot has the zone but no AXFR was served")
	}

	// One record changes: NOTIFY, then Knot asks IXFR.
	changed := strings.Replace(testZoneText, "mx       60 IN A 192.0.2.25", "mx       60 IN A 192.0.2.26", 1)
	writeZone(t, file, changed)
	start := time.Now()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	waitKnot("the changed record", func(r *dns.Msg) bool {
		return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "192.0.2.26"
	}, "mx.example.test.", dns.TypeA)
	t.Logf("one-record change reached knot in %v", time.Since(start).Round(time.Millisecond))
	if n := testutil.ToFloat64(s.metrics.transfers.WithLabelValues("auth", "ixfr", "ok")); n < 1 {
		t.Fatalf("the change reached knot without an IXFR (axfr %v):\n%s", testutil.ToFloat64(s.metrics.transfers.WithLabelValues("auth", "axfr", "ok")), knotLog())
	}
	if n := testutil.ToFloat64(s.metrics.notifies.WithLabelValues("auth", "ok")); n < 1 {
		t.Fatal("no NOTIFY acknowledged by knot")
	}

	// A health change: gw-1 goes down, the secondary drops it too.
	gw.down.Store(true)
	waitKnot("the health change", func(r *dns.Msg) bool {
		return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "192.0.2.12"
	}, "gw.example.test.", dns.TypeA)
	ourSerial, _ := s.Serial("example.test.")
	waitKnot("our serial", func(r *dns.Msg) bool {
		return len(r.Answer) == 1 && r.Answer[0].(*dns.SOA).Serial == ourSerial
	}, "example.test.", dns.TypeSOA)
}
