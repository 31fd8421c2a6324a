// Command fanout measures broadcast fan-out to many live SSE subscribers:
// Blueprint's internal/realtime (Hub + Registry + Router on the embedded
// NATS broker) — one Router.Broadcast to a channel every stream is
// subscribed to, and, as a second row, one Router.Send per user — next to
// Centrifugo v6 (one publish to a channel every client is subscribed to),
// all driven by the same load generator in the same run. See README.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	role := flag.String("role", "", "internal: blueprint-server")
	mode := flag.String("mode", "", "internal: the blueprint server's scenario (names its CPU profile)")
	n := flag.Int("n", 10000, "SSE subscribers")
	msgs := flag.Int("msgs", 100, "broadcast messages in the steady phase")
	rate := flag.Float64("rate", 10, "steady-phase messages per second")
	burst := flag.Int("burst", 20, "messages published back to back after the steady phase (throughput)")
	par := flag.Int("par", 200, "connections opened at a time")
	cfBin := flag.String("centrifugo", "centrifugo", "Centrifugo binary")
	only := flag.String("only", "", "comma-separated subset of: broadcast (Blueprint, one Router.Broadcast), peruser (Blueprint, one Router.Send per user), centrifugo")
	flag.Parse()
	if *role == "blueprint-server" {
		if err := serveBlueprint(*n, *mode); err != nil {
			fmt.Fprintln(os.Stderr, "fanout server:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *msgs, *rate, *burst, *par, *cfBin, *only); err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// result is one target's figures.
type result struct {
	name                       string
	conns, connErrs            int
	connectSecs                float64
	p50, p99, p999, max        time.Duration
	delivered, expected        int64
	dupes                      int64
	steadyRate, burstRate      float64
	burstDelivered, burstExpct int64
	rssKB, hwmKB               int64
	note                       string
}

func run(n, msgs int, rate float64, burst, par int, cfBin, only string) error {
	fd := raiseFDLimit()
	pinned := pinSelf("1")
	runtime.GOMAXPROCS(1)
	load1, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("fanout: %d subscribers, %d msgs at %.0f/s + burst of %d; nproc %d; fd limit %d; generator pinned: %v; load %s\n",
		n, msgs, rate, burst, runtime.NumCPU(), fd, pinned, strings.Fields(string(load1))[:3])
	if int(fd) < n+200 {
		fmt.Printf("warning: fd limit %d is below %d subscribers\n", fd, n)
	}
	var results []result

	want := func(s string) bool { return only == "" || slices.Contains(strings.Split(only, ","), s) }
	// The like-for-like pair first, one right after the other; the
	// per-user row last.
	for _, scenario := range []string{"broadcast", "centrifugo", "peruser"} {
		if !want(scenario) {
			continue
		}
		if scenario != "centrifugo" {
			r, err := runBlueprint(n, msgs, rate, burst, par, scenario)
			if err != nil {
				return fmt.Errorf("blueprint %s: %w", scenario, err)
			}
			results = append(results, r)
			continue
		}
		bin, err := exec.LookPath(cfBin)
		if err != nil {
			fmt.Printf("Centrifugo is missing (%v): install it with `go install github.com/centrifugal/centrifugo/v6@v6.9.1`; Blueprint alone below\n", err)
			continue
		}
		r, err := runCentrifugo(bin, n, msgs, rate, burst, par)
		if err != nil {
			return fmt.Errorf("centrifugo: %w", err)
		}
		results = append(results, r)
	}
	load2, _ := os.ReadFile("/proc/loadavg")
	printTable(results)
	fmt.Printf("load average at end: %s\n", strings.Fields(string(load2))[:3])
	return nil
}

// pinSelf pins every thread of this process to cpus with taskset.
func pinSelf(cpus string) bool {
	if runtime.NumCPU() < 2 {
		return false
	}
	return exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).Run() == nil
}

// startServer starts argv pinned to CPU 0 and returns the command and its
// stdout.
func startServer(argv []string) (*exec.Cmd, *bufio.Reader, error) {
	if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		argv = append([]string{"taskset", "-c", "0"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return cmd, bufio.NewReader(out), nil
}

func stopServer(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// runBlueprint measures Blueprint in mode "broadcast" (every stream
// subscribed to channel "news", one Router.Broadcast per message) or
// "peruser" (one Router.Send per user per message).
func runBlueprint(n, msgs int, rate float64, burst, par int, mode string) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	cmd, out, err := startServer([]string{self, "-role", "blueprint-server", "-mode", mode, "-n", strconv.Itoa(n)})
	if err != nil {
		return result{}, err
	}
	defer stopServer(cmd)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening ") {
		return result{}, fmt.Errorf("server did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)
	base := "http://" + strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	api := &http.Client{Transport: newTransport(), Timeout: 60 * time.Second}
	sse, pub, ready, name := "/sse?user=", "/broadcast?users="+strconv.Itoa(n), "/ready?users="+strconv.Itoa(n), "Blueprint per-user"
	if mode == "broadcast" {
		sse, pub, ready, name = "/sse?channel=news&user=", "/publish?channel=news", ready+"&channel=news", "Blueprint broadcast"
	}
	t := &target{
		name: name,
		pid:  cmd.Process.Pid,
		url:  func(i int) string { return base + sse + strconv.Itoa(i+1) },
		publish: func(ctx context.Context, data []byte) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+pub, strings.NewReader(string(data)))
			resp, err := api.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("publish: %d %s", resp.StatusCode, b)
			}
			return nil
		},
		ready: func(ctx context.Context) error {
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := api.Get(base + ready)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusNoContent {
						return nil
					}
					err = fmt.Errorf("%s", b)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("registry not ready: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		},
	}
	r, err := measure(t, n, msgs, rate, burst, par)
	r.note = "one Router.Send per user (one NATS message per subscriber per broadcast)"
	if mode == "broadcast" {
		r.note = "one Router.Broadcast to channel \"news\" (one NATS message per broadcast)"
	}
	if resp, err := api.Get(base + "/stats"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("  blueprint hub stats: %s", b)
	}
	return r, err
}

func runCentrifugo(bin string, n, msgs int, rate float64, burst, par int) (result, error) {
	dir, err := os.MkdirTemp("", "fanout-centrifugo-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	t, argv, err := centrifugoTarget(bin, dir)
	if err != nil {
		return result{}, err
	}
	if v, err := exec.Command(bin, "version").CombinedOutput(); err == nil {
		fmt.Printf("  %s", v)
	}
	cmd, out, err := startServer(argv)
	if err != nil {
		return result{}, err
	}
	go io.Copy(os.Stdout, out)
	defer stopServer(cmd)
	t.pid = cmd.Process.Pid
	u := t.url(0)
	addr := strings.TrimPrefix(u[:strings.Index(u, "/connection")], "http://")
	if err := waitPort(addr, 20*time.Second); err != nil {
		return result{}, err
	}
	r, err := measure(t, n, msgs, rate, burst, par)
	r.note = "one publish to channel \"news\" (broadcast channel)"
	return r, err
}

// measure runs the connect, steady and burst phases against t.
func measure(t *target, n, msgs int, rate float64, burst, par int) (result, error) {
	total := msgs + burst
	l := &load{n: n, msgs: total, late: msgs, lat: make([]int64, total*n)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	fmt.Printf("%s: opening %d SSE connections...\n", t.name, n)
	t0 := time.Now()
	ok, cerr := l.connect(ctx, t, par, &wg)
	res := result{name: t.name, conns: ok, connErrs: n - ok, connectSecs: time.Since(t0).Seconds()}
	fmt.Printf("%s: %d connected in %.1fs (%d failed; first error: %v)\n", t.name, ok, res.connectSecs, n-ok, cerr)
	if ok == 0 {
		return res, fmt.Errorf("no connection: %v", cerr)
	}
	if err := t.ready(ctx); err != nil {
		return res, err
	}

	// Steady phase: msgs at rate, each publish in its own goroutine so
	// that a slow publish does not shift the schedule.
	fmt.Printf("%s: steady phase, %d messages at %.0f/s\n", t.name, msgs, rate)
	var pubErrs sync.Map
	var pw sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	start := time.Now()
	for seq := 0; seq < msgs; seq++ {
		pw.Go(func() {
			if err := t.publish(ctx, payload(seq)); err != nil {
				pubErrs.Store(seq, err)
			}
		})
		<-tick.C
	}
	tick.Stop()
	pw.Wait()
	want := int64(ok) * int64(msgs)
	waitFor(func() bool { return l.got.Load() >= want }, 10*time.Second)
	steadyGot := l.got.Load()
	steadyEnd := time.Unix(0, l.lastRx.Load())
	res.steadyRate = float64(steadyGot) / steadyEnd.Sub(start).Seconds()

	// Burst phase: messages back to back, each publish after the previous
	// one returned.
	if burst > 0 {
		fmt.Printf("%s: burst phase, %d messages back to back\n", t.name, burst)
		bstart := time.Now()
		for seq := msgs; seq < total; seq++ {
			if err := t.publish(ctx, payload(seq)); err != nil {
				pubErrs.Store(seq, err)
			}
		}
		bwant := int64(ok) * int64(burst)
		waitFor(func() bool { return l.gotLate.Load() >= bwant }, 15*time.Second)
		res.burstDelivered = l.gotLate.Load()
		res.burstExpct = int64(ok) * int64(burst)
		res.burstRate = float64(res.burstDelivered) / time.Unix(0, l.lastLate.Load()).Sub(bstart).Seconds()
	}
	res.rssKB, res.hwmKB = procMem(t.pid)
	pubErrs.Range(func(k, v any) bool { fmt.Printf("%s: publish %v failed: %v\n", t.name, k, v); return true })

	cancel()
	wg.Wait()
	var lats []int64
	for seq := 0; seq < msgs; seq++ {
		for _, v := range l.lat[seq*n : (seq+1)*n] {
			if v != 0 {
				lats = append(lats, v)
			}
		}
	}
	slices.Sort(lats)
	res.delivered, res.expected, res.dupes = int64(len(lats)), want, l.dupes.Load()
	if len(lats) > 0 {
		q := func(p float64) time.Duration { return time.Duration(lats[min(len(lats)-1, int(p*float64(len(lats))))]) }
		res.p50, res.p99, res.p999, res.max = q(0.50), q(0.99), q(0.999), time.Duration(lats[len(lats)-1])
	}
	return res, nil
}

func waitFor(cond func() bool, d time.Duration) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// procMem returns VmRSS and VmHWM of pid in KiB.
func procMem(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}
