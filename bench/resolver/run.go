package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/blueprint-media/blueprint/internal/nameserver/nstest"
)

// hosts is the number of names in the benchmark zone.
const hosts = 20000

func zoneRecords() string {
	var b strings.Builder
	for i := range hosts {
		fmt.Fprintf(&b, "h%d 3600 IN A 10.%d.%d.%d\n", i, i/65536%256, i/256%256, i%256)
	}
	return b.String()
}

func run(rounds int, duration time.Duration, window, sockets, names, uncached int, pin bool) error {
	if names > hosts || uncached*rounds > hosts {
		return fmt.Errorf("at most %d names (cached set, and uncached × rounds)", hosts)
	}
	pinSelf(pin)
	ctx := context.Background()
	h, stopH, err := nstest.Start(ctx, nstest.Options{Records: zoneRecords()})
	if err != nil {
		return fmt.Errorf("hierarchy: %w", err)
	}
	defer stopH(ctx)
	dir, err := os.MkdirTemp("", "bench-resolver-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ours, err := startBlueprint(h, pin)
	if err != nil {
		return err
	}
	defer ours.stop()
	ubPort, err := freePort()
	if err != nil {
		return err
	}
	ub, err := startUnbound(h, dir, ubPort, pin)
	if err != nil {
		return err
	}
	defer ub.stop()
	peers := []*peer{ours, ub}

	// The cached set: names [0, names) as A queries, 10 % of them NXDOMAIN.
	var cachedQs []dns.Question
	for i := range names {
		name := fmt.Sprintf("h%d.%s", i, h.Zone)
		if i%10 == 9 {
			name = fmt.Sprintf("nx%d.%s", i, h.Zone)
		}
		cachedQs = append(cachedQs, dns.Question{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET})
	}
	cached := packQueries(cachedQs)
	// Warm both caches (and the delegations) and check both answer alike.
	for _, p := range peers {
		st, err := load(p.addr, cached, 16, 2, time.Minute, false)
		if err != nil {
			return fmt.Errorf("%s warm-up: %w", p.name, err)
		}
		if st.lost > 0 || st.rcodes[dns.RcodeSuccess] != names-names/10 || st.rcodes[dns.RcodeNameError] != names/10 {
			return fmt.Errorf("%s warm-up: %d answered, %d lost, rcodes %v", p.name, st.answered, st.lost, st.rcodes)
		}
	}
	fmt.Printf("# bench/resolver %s, %d CPUs, load %s\n", time.Now().UTC().Format(time.RFC3339), numCPU(), loadavg())
	fmt.Printf("# hierarchy: nstest (Blueprint nameservers), root %s, port %d; %d-name zone\n", h.RootHints[0], h.Port, hosts)
	fmt.Printf("# each resolver pinned to CPU 0 (pin=%v), blueprint GOMAXPROCS=1, unbound num-threads 1; window %d over %d sockets\n\n", pin, window, sockets)

	type result struct{ cached, uncached []stats }
	res := map[string]*result{}
	for _, p := range peers {
		res[p.name] = &result{}
	}
	for round := range rounds {
		// Uncached names for this round: each resolver sees them first.
		var unQs []dns.Question
		for i := range uncached {
			n := hosts - 1 - (round*uncached + i)
			unQs = append(unQs, dns.Question{Name: fmt.Sprintf("h%d.%s", n, h.Zone), Qtype: dns.TypeA, Qclass: dns.ClassINET})
		}
		un := packQueries(unQs)
		order := peers
		if round%2 == 1 {
			order = []*peer{ub, ours}
		}
		for _, p := range order {
			c0 := p.cpu()
			st, err := load(p.addr, cached, window, sockets, duration, true)
			if err != nil {
				return fmt.Errorf("%s cached: %w", p.name, err)
			}
			st.cpu = p.cpu() - c0
			res[p.name].cached = append(res[p.name].cached, st)
			c0 = p.cpu()
			st, err = load(p.addr, un, window, sockets, time.Minute, false)
			if err != nil {
				return fmt.Errorf("%s uncached: %w", p.name, err)
			}
			st.cpu = p.cpu() - c0
			if st.rcodes[dns.RcodeSuccess] != st.answered {
				return fmt.Errorf("%s uncached: rcodes %v", p.name, st.rcodes)
			}
			res[p.name].uncached = append(res[p.name].uncached, st)
			fmt.Fprintf(os.Stderr, "round %d %-9s cached %8.0f q/s (%.1f us CPU/q)  uncached %7.0f q/s (%.1f us CPU/q, lost %d)\n",
				round+1, p.name, res[p.name].cached[round].qps(), res[p.name].cached[round].usPerQuery(), st.qps(), st.usPerQuery(), st.lost)
		}
	}

	med := func(xs []stats, f func(stats) float64) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	qps := func(s stats) float64 { return s.qps() }
	cpu := func(s stats) float64 { return s.usPerQuery() }
	p50 := func(s stats) float64 { return float64(s.pct(0.50).Microseconds()) }
	p99 := func(s stats) float64 { return float64(s.pct(0.99).Microseconds()) }
	lost := func(s stats) float64 { return float64(s.lost) }
	fmt.Printf("| workload | metric (median of %d) | blueprint | unbound | blueprint / unbound |\n|---|---|---:|---:|---:|\n", rounds)
	for _, w := range []struct {
		name string
		get  func(*result) []stats
	}{
		{"cached", func(r *result) []stats { return r.cached }},
		{"uncached", func(r *result) []stats { return r.uncached }},
	} {
		for _, m := range []struct {
			name string
			f    func(stats) float64
			unit string
		}{
			{"queries/s", qps, "%.0f"}, {"resolver CPU µs/query", cpu, "%.1f"},
			{"p50 latency µs", p50, "%.0f"}, {"p99 latency µs", p99, "%.0f"}, {"lost", lost, "%.0f"},
		} {
			a, b := med(w.get(res["blueprint"]), m.f), med(w.get(res["unbound"]), m.f)
			ratio := "—"
			if b != 0 {
				ratio = fmt.Sprintf("%.2f×", a/b)
			}
			fmt.Printf("| %s | %s | "+m.unit+" | "+m.unit+" | %s |\n", w.name, m.name, a, b, ratio)
		}
	}
	fmt.Println()
	fmt.Println("CPU µs/query is the resolver process's user+system time divided by answers (lower is better);")
	fmt.Println("1e6 / it is the implied queries/s per core when the load generator, not the resolver, is the limit.")
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
