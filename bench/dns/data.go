package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
)

// writeZone writes the benchmark zone: n hosts with A records, AAAA on
// every 4th, a CNAME on every 10th, TXT on every 20th, SRV on every 50th,
// and a delegation "sub" (the research brief's data set, section 5).
func writeZone(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "$ORIGIN bench.test.\n$TTL 3600")
	fmt.Fprintln(w, "@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n@ IN NS ns1\n@ IN NS ns2\nns1 IN A 127.0.0.1\nns2 IN A 127.0.0.2")
	for i := range n {
		fmt.Fprintf(w, "h%d IN A 10.%d.%d.%d\n", i, i/65536%256, i/256%256, i%256)
		if i%4 == 0 {
			fmt.Fprintf(w, "h%d IN AAAA fd00::%x\n", i, i)
		}
		if i%10 == 0 {
			fmt.Fprintf(w, "c%d IN CNAME h%d\n", i, i)
		}
		if i%20 == 0 {
			fmt.Fprintf(w, "h%d IN TXT \"id=%d\"\n", i, i)
		}
		if i%50 == 0 {
			fmt.Fprintf(w, "_sip._udp.h%d IN SRV 10 5 5060 h%d\n", i, i)
		}
	}
	fmt.Fprintln(w, "sub IN NS ns.sub\nns.sub IN A 127.0.0.9")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeQueries writes 100,000 dnsperf queries over the zone, seeded: 60%
// A, 10% AAAA, 7% via CNAME, 3% TXT, 2% SRV, 2% into the delegation
// (referrals) and 16% NXDOMAIN.
func writeQueries(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(42, 42))
	for range 100_000 {
		r := rng.Float64()
		i := rng.IntN(n)
		switch {
		case r < .60:
			fmt.Fprintf(w, "h%d.bench.test. A\n", i)
		case r < .70:
			fmt.Fprintf(w, "h%d.bench.test. AAAA\n", i-i%4)
		case r < .77:
			fmt.Fprintf(w, "c%d.bench.test. A\n", i-i%10)
		case r < .80:
			fmt.Fprintf(w, "h%d.bench.test. TXT\n", i-i%20)
		case r < .82:
			fmt.Fprintf(w, "_sip._udp.h%d.bench.test. SRV\n", i-i%50)
		case r < .84:
			fmt.Fprintf(w, "x%d.sub.bench.test. A\n", i)
		default:
			fmt.Fprintf(w, "nx%d.bench.test. A\n", i)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
