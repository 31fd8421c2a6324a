package main

import (
	"fmt"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

func printTable(rs []result) {
	fmt.Println()
	fmt.Println("| server | conns | p50 ms | p99 ms | p99.9 ms | max ms | delivered/expected (steady) | lost | steady deliveries/s | burst deliveries/s | server RSS MiB (peak) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %d/%d | %d | %.0f | %.0f (%d/%d) | %.0f (%.0f) |\n",
			r.name, r.conns, ms(r.p50), ms(r.p99), ms(r.p999), ms(r.max), r.delivered, r.expected,
			r.expected-r.delivered, r.steadyRate, r.burstRate, r.burstDelivered, r.burstExpct,
			float64(r.rssKB)/1024, float64(r.hwmKB)/1024)
	}
	for _, r := range rs {
		fmt.Printf("%s: %s\n", r.name, r.note)
	}
	var cf *result
	for i := range rs {
		if rs[i].name == "Centrifugo" {
			cf = &rs[i]
		}
	}
	if cf == nil {
		return
	}
	ratio := func(x, y float64) string {
		if y == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", x/y)
	}
	for _, a := range rs {
		if a.name == cf.name {
			continue
		}
		b := *cf
		fmt.Println()
		fmt.Printf("ratios %s/Centrifugo (latency: lower is better; throughput: higher is better):\n", a.name)
		fmt.Printf("  p50 %s, p99 %s, p99.9 %s, steady deliveries/s %s, burst deliveries/s %s, peak RSS %s\n",
			ratio(float64(a.p50), float64(b.p50)), ratio(float64(a.p99), float64(b.p99)),
			ratio(float64(a.p999), float64(b.p999)), ratio(a.steadyRate, b.steadyRate),
			ratio(a.burstRate, b.burstRate), ratio(float64(a.hwmKB), float64(b.hwmKB)))
		fmt.Printf("  goal p99 ≤ 100 ms: %v; p99 within 1.2× of Centrifugo: %v; nothing lost: %v\n",
			a.p99 <= 100*time.Millisecond, b.p99 > 0 && float64(a.p99) <= 1.2*float64(b.p99), a.delivered == a.expected)
	}
}
