// Command dns benchmarks Blueprint's authoritative server against Knot DNS,
// NSD and CoreDNS (each when installed) on the same zone and the same query
// file, one after the other in one run, and prints the ratios. See
// README.md.
//
//	go run ./bench/dns                       # 3 rounds × 10 s per server, dnsperf
//	go run ./bench/dns -duration 5s -rounds 1 -servers blueprint,knot
//	go run ./bench/dns -rate 40000           # fixed offered rate (CPU per answer)
//	go run ./bench/dns -tcp                  # over TCP
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/blueprint-media/blueprint/internal/nameserver"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench/dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		serve    = fs.String("serve", "", "internal: serve this zone file (bench.test.) and wait for a signal")
		listen   = fs.String("listen", "127.0.0.1:15300", "internal: address for -serve")
		servers  = fs.String("servers", "blueprint,knot,nsd,coredns", "servers to run, in order (missing ones are skipped)")
		hosts    = fs.Int("hosts", 10000, "hosts in the zone")
		duration = fs.Duration("duration", 10*time.Second, "measured time per server and round")
		warmup   = fs.Duration("warmup", 2*time.Second, "load before measuring")
		rounds   = fs.Int("rounds", 3, "rounds (servers interleaved); the median is reported")
		rate     = fs.Int("rate", 0, "offered queries per second (0: closed loop, as fast as answered)")
		tcp      = fs.Bool("tcp", false, "query over TCP")
		ecs      = fs.Bool("ecs", false, "send an EDNS Client Subnet option (203.0.113.0/24) with every query (dnsperf only)")
		gen      = fs.String("gen", "auto", "load generator: dnsperf, go, or auto (dnsperf when installed)")
		keep     = fs.String("dir", "", "working directory to keep (default: a temp dir, removed)")
		profile  = fs.String("cpuprofile", "", "internal: with -serve, write a CPU profile of the server here")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *serve != "" {
		return serveZone(*serve, *listen, *profile, stderr)
	}
	dir := *keep
	if dir == "" {
		d, err := os.MkdirTemp("", "bench-dns-")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	zone := filepath.Join(dir, "bench.test.zone")
	queries := filepath.Join(dir, "queries.txt")
	if err := writeZone(zone, *hosts); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := writeQueries(queries, *hosts); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	useDnsperf := *gen == "dnsperf" || (*gen == "auto" && haveDnsperf())
	if *gen == "dnsperf" && !haveDnsperf() {
		fmt.Fprintln(stderr, "dnsperf is not installed: apt-get install dnsperf")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	launch := map[string]func(dir, zone string, port int) (*proc, error){
		"blueprint": startBlueprint, "knot": startKnot, "nsd": startNSD, "coredns": startCoreDNS,
	}
	names := strings.Split(*servers, ",")
	results := map[string][]result{}
	skipped := map[string]string{}
	load := uptimeLoad()
	fmt.Fprintf(stdout, "bench/dns: %d hosts, %v × %d rounds, %s, generator %s, %d CPUs, load %s\n",
		*hosts, *duration, *rounds, map[bool]string{true: "TCP", false: "UDP"}[*tcp],
		map[bool]string{true: "dnsperf", false: "go"}[useDnsperf], runtime.NumCPU(), load)
	for round := 1; round <= *rounds && ctx.Err() == nil; round++ {
		for _, name := range names {
			name = strings.TrimSpace(name)
			start, ok := launch[name]
			if !ok {
				fmt.Fprintf(stderr, "unknown server %q\n", name)
				return 2
			}
			if _, skip := skipped[name]; skip {
				continue
			}
			port, err := freePort()
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			p, err := start(dir, zone, port)
			if errors.Is(err, errNotInstalled) {
				skipped[name] = "not installed"
				fmt.Fprintf(stdout, "  %-9s skipped: not installed\n", name)
				continue
			}
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", name, err)
				return 1
			}
			loadStart := time.Now()
			if err := p.waitReady(60 * time.Second); err != nil {
				p.stop()
				fmt.Fprintln(stderr, err)
				return 1
			}
			ready := time.Since(loadStart)
			res, err := measure(ctx, p, queries, *warmup, *duration, *rate, *tcp, *ecs, useDnsperf)
			res.ready = ready
			res.rss = p.rssKiB()
			p.stop()
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", name, err)
				return 1
			}
			results[name] = append(results[name], res)
			fmt.Fprintf(stdout, "  round %d %-9s %9.0f q/s  lost %5.2f%%  cpu %6.2f µs/answer  resp %3.0f B  %s\n",
				round, name, res.qps, res.lostPct, res.usPerAnswer, res.respBytes, res.rcodes)
		}
	}
	report(stdout, names, results, skipped, *rate)
	return 0
}

// result is one measured run.
type result struct {
	qps         float64
	completed   float64
	lostPct     float64
	cpuSec      float64
	usPerAnswer float64
	respBytes   float64
	latencyMs   float64
	rcodes      string
	ready       time.Duration
	rss         int
}

// measure warms the server up, then runs the generator for d and reads the
// server's CPU time around it.
func measure(ctx context.Context, p *proc, queries string, warm, d time.Duration, rate int, tcp, ecs, useDnsperf bool) (result, error) {
	gen := func(d time.Duration) (result, error) {
		if useDnsperf {
			return runDnsperf(ctx, p.addr, queries, d, rate, tcp, ecs)
		}
		return runGo(ctx, p.addr, queries, d, rate, tcp)
	}
	if warm > 0 {
		if _, err := gen(warm); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	c0, err := p.cpuSeconds()
	if err != nil {
		return result{}, err
	}
	res, err := gen(d)
	if err != nil {
		return res, err
	}
	c1, err := p.cpuSeconds()
	if err != nil {
		return res, err
	}
	res.cpuSec = c1 - c0
	if res.completed > 0 {
		res.usPerAnswer = res.cpuSec / res.completed * 1e6
	}
	return res, nil
}

func haveDnsperf() bool { _, err := exec.LookPath("dnsperf"); return err == nil }

var (
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+\d+ \(([\d.]+)%\)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	reLatency   = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+)`)
	reResp      = regexp.MustCompile(`response (\d+)`)
	reRcodes    = regexp.MustCompile(`Response codes:\s+(.*)`)
)

func runDnsperf(ctx context.Context, addr, queries string, d time.Duration, rate int, tcp, ecs bool) (result, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"dnsperf", "-s", host, "-p", port, "-d", queries, "-l", strconv.Itoa(int(d.Seconds())), "-c", "8", "-q", "200", "-T", "1", "-t", "2"}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate))
	}
	if ecs { // option 8: family 1, source /24, scope 0, 203.0.113
		args = append(args, "-E", "8:00011800cb0071")
	}
	if tcp {
		args = append(args, "-m", "tcp")
	}
	argv := pinned(1, args...)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	s := string(out)
	num := func(re *regexp.Regexp) float64 {
		m := re.FindStringSubmatch(s)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	r := result{
		completed: num(reCompleted), lostPct: num(reLost), qps: num(reQPS),
		latencyMs: num(reLatency) * 1000, respBytes: num(reResp),
	}
	if m := reRcodes.FindStringSubmatch(s); m != nil {
		r.rcodes = m[1]
	}
	if r.completed == 0 {
		return r, fmt.Errorf("dnsperf completed no query:\n%s", s)
	}
	return r, nil
}

// runGo is the load generator used when dnsperf is missing: 64
// goroutines, each with its own socket, one query in flight each (closed
// loop), or paced to rate.
func runGo(ctx context.Context, addr, queries string, d time.Duration, rate int, tcp bool) (result, error) {
	b, err := os.ReadFile(queries)
	if err != nil {
		return result{}, err
	}
	var msgs [][]byte
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		m := new(dns.Msg)
		m.SetQuestion(f[0], dns.StringToType[f[1]])
		m.RecursionDesired = false
		m.SetEdns0(4096, false)
		w, err := m.Pack()
		if err != nil {
			return result{}, err
		}
		msgs = append(msgs, w)
	}
	const workers = 64
	var sent, done, bytes atomic.Int64
	var rcodeMu sync.Mutex
	rcodes := map[int]int64{}
	deadline := time.Now().Add(d)
	var perWorker time.Duration
	if rate > 0 {
		perWorker = time.Duration(float64(time.Second) * workers / float64(rate))
	}
	var wg sync.WaitGroup
	network := "udp"
	if tcp {
		network = "tcp"
	}
	for w := range workers {
		wg.Go(func() {
			conn, err := dns.Dial(network, addr)
			if err != nil {
				return
			}
			defer conn.Close()
			local := map[int]int64{}
			next := time.Now()
			for i := w; time.Now().Before(deadline) && ctx.Err() == nil; i += workers {
				if perWorker > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
					next = next.Add(perWorker)
				}
				q := msgs[i%len(msgs)]
				sent.Add(1)
				conn.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := conn.Write(q); err != nil {
					continue
				}
				r, err := conn.ReadMsg()
				if err != nil {
					continue
				}
				done.Add(1)
				bytes.Add(int64(r.Len()))
				local[r.Rcode]++
			}
			rcodeMu.Lock()
			for k, v := range local {
				rcodes[k] += v
			}
			rcodeMu.Unlock()
		})
	}
	start := time.Now()
	wg.Wait()
	el := time.Since(start).Seconds()
	r := result{completed: float64(done.Load()), qps: float64(done.Load()) / el}
	if s := sent.Load(); s > 0 {
		r.lostPct = float64(s-done.Load()) / float64(s) * 100
	}
	if done.Load() > 0 {
		r.respBytes = float64(bytes.Load()) / float64(done.Load())
	}
	var parts []string
	for k, v := range rcodes {
		parts = append(parts, fmt.Sprintf("%s %d (%.2f%%)", dns.RcodeToString[k], v, float64(v)/float64(done.Load())*100))
	}
	slices.Sort(parts)
	r.rcodes = strings.Join(parts, ", ")
	if done.Load() == 0 {
		return r, errors.New("no query answered")
	}
	return r, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(w io.Writer, names []string, results map[string][]result, skipped map[string]string, rate int) {
	type row struct {
		name                        string
		qps, us, perCore, lost, rsp float64
		ready                       time.Duration
		rss                         int
	}
	var rows []row
	for _, n := range names {
		rs := results[n]
		if len(rs) == 0 {
			continue
		}
		pick := func(f func(result) float64) float64 {
			var xs []float64
			for _, r := range rs {
				xs = append(xs, f(r))
			}
			return median(xs)
		}
		us := pick(func(r result) float64 { return r.usPerAnswer })
		rr := row{
			name: n, qps: pick(func(r result) float64 { return r.qps }), us: us,
			lost: pick(func(r result) float64 { return r.lostPct }), rsp: pick(func(r result) float64 { return r.respBytes }),
			ready: rs[0].ready, rss: rs[0].rss,
		}
		if us > 0 {
			rr.perCore = 1e6 / us
		}
		rows = append(rows, rr)
	}
	fmt.Fprintln(w)
	mode := "closed loop"
	if rate > 0 {
		mode = fmt.Sprintf("offered %d q/s", rate)
	}
	fmt.Fprintf(w, "Medians (%s):\n", mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tq/s\tlost %\tCPU µs/answer\timplied q/s per core\tresponse B\tstart→ready\tRSS MiB\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.0f\t%.0f\t%v\t%.1f\t\n", r.name, r.qps, r.lost, r.us, r.perCore, r.rsp, r.ready.Round(time.Millisecond), float64(r.rss)/1024)
	}
	tw.Flush()
	var ours *row
	for i := range rows {
		if rows[i].name == "blueprint" {
			ours = &rows[i]
		}
	}
	if ours != nil {
		fmt.Fprintln(w)
		for _, r := range rows {
			if r.name == "blueprint" {
				continue
			}
			fmt.Fprintf(w, "blueprint / %-8s q/s %.2fx   per-core capacity (1/CPU per answer) %.2fx\n", r.name, ours.qps/r.qps, ours.perCore/r.perCore)
		}
	}
	for n, why := range skipped {
		fmt.Fprintf(w, "%s skipped: %s\n", n, why)
	}
}

// serveZone runs Blueprint's authoritative server on one zone file until
// SIGTERM: the -serve mode the benchmark starts as a child process.
func serveZone(zone, listen, profile string, stderr io.Writer) int {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := nameserver.New(nameserver.Config{
		Addr:  listen,
		Zones: []nameserver.ZoneConfig{{Origin: "bench.test.", Files: []string{zone}}},
	}, logger, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Start(ctx); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(sctx)
	return 0
}

func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func uptimeLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
