package nameserver

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestHotReloadDropsNothing reloads the zone again and again while
// clients query without pause: every query is answered, from either the
// old or the new version, and never with an error.
func TestHotReloadDropsNothing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "example.test.zone")
	version := func(i int) string {
		return strings.Replace(testZoneText, "2024010101", itoa(uint32(2024010101+i)), 1) +
			"ver 60 IN TXT \"v" + itoa(uint32(i)) + "\"\n"
	}
	writeZone(t, file, version(0))
	s := startServer(t, Config{Zones: []ZoneConfig{{Origin: "example.test.", Files: []string{file}}}})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered, failed atomic.Int64
	var firstErr atomic.Value
	for range 4 {
		wg.Go(func() {
			c := &dns.Client{Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				m := new(dns.Msg)
				m.SetQuestion("www.example.test.", dns.TypeA)
				r, _, err := c.Exchange(m, s.Addr())
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, []any{err, r})
					continue
				}
				answered.Add(1)
			}
		})
	}
	const reloads = 30
	for i := 1; i <= reloads; i++ {
		writeZone(t, file, version(i))
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		r := query(t, s.Addr(), "ver.example.test", dns.TypeTXT)
		if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "\"v"+itoa(uint32(i))+"\"") {
			t.Fatalf("after reload %d: %v", i, r.Answer)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d queries answered during %d reloads", answered.Load(), reloads)
	if failed.Load() != 0 {
		t.Fatalf("%d queries failed during reloads, first: %v", failed.Load(), firstErr.Load())
	}
	if answered.Load() == 0 {
		t.Fatal("no query was answered")
	}
}

// TestZoneDirPolling adds a zone file to the zone directory and changes
// it; the polling reload picks both up.
func TestZoneDirPolling(t *testing.T) {
	dir := t.TempDir()
	writeZone(t, filepath.Join(dir, "example.test.zone"), testZoneText)
	s := startServer(t, Config{ZoneDir: dir, ReloadInterval: 50 * time.Millisecond})
	if r := query(t, s.Addr(), "www.example.test", dns.TypeA); len(r.Answer) != 2 {
		t.Fatalf("zone from dir: %v", r)
	}
	other := `$ORIGIN other.test.
@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@ 300 IN NS ns1
ns1 300 IN A 127.0.0.1
host 300 IN A 192.0.2.77
`
	writeZone(t, filepath.Join(dir, "other.test.zone"), other)
	waitFor(t, "the new zone", func() bool {
		r := query(t, s.Addr(), "host.other.test", dns.TypeA)
		return len(r.Answer) == 1
	})
	writeZone(t, filepath.Join(dir, "other.test.zone"), strings.Replace(strings.Replace(other, "192.0.2.77", "192.0.2.78", 1), " 1 7200", " 2 7200", 1))
	waitFor(t, "the changed record", func() bool {
		r := query(t, s.Addr(), "host.other.test", dns.TypeA)
		return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "192.0.2.78"
	})
}

// waitFor polls cond (a hang guard: the deadline is generous and only
// stops a stuck test).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
