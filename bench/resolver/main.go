// Command resolver benchmarks Blueprint's caching iterative resolver next
// to Unbound, in the same run, against the same local hierarchy (root →
// TLD → platform zone, internal/nameserver via nstest): cached and
// uncached queries per second, latency percentiles and resolver CPU time
// per query, with the ratios. Not part of make test; see README.md.
//
//	go run ./bench/resolver [-rounds 3] [-duration 5s] [-window 64] [-names 1000] [-uncached 3000]
package main

import (
	"bufio"
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
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/blueprint-media/blueprint/internal/nameserver/nstest"
	"github.com/blueprint-media/blueprint/internal/resolver"
)

func main() {
	serve := flag.Bool("serve", false, "internal: run only the resolver (child process)")
	root := flag.String("root", "", "internal: root hint for -serve")
	port := flag.Int("port", 0, "internal: server port for -serve")
	rounds := flag.Int("rounds", 3, "interleaved rounds per resolver; medians are reported")
	duration := flag.Duration("duration", 5*time.Second, "length of each cached run")
	window := flag.Int("window", 64, "queries outstanding at once (closed loop)")
	sockets := flag.Int("sockets", 4, "client UDP sockets")
	names := flag.Int("names", 1000, "distinct names in the cached set")
	uncached := flag.Int("uncached", 6000, "distinct never-asked names per uncached run")
	pin := flag.Bool("pin", true, "pin each resolver to CPU 0 and the load generator plus the authoritative servers to the others (taskset)")
	flag.Parse()
	if *serve {
		if err := serveResolver(*root, *port); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*rounds, *duration, *window, *sockets, *names, *uncached, *pin); err != nil {
		fmt.Fprintln(os.Stderr, "bench/resolver:", err)
		os.Exit(1)
	}
}

// serveResolver is the child process: one resolver on a free port, its
// address on stdout, until stdin closes.
func serveResolver(root string, port int) error {
	r, err := resolver.New(resolver.Config{Addr: "127.0.0.1:0", RootHints: []string{root}, Port: port},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	if err != nil {
		return err
	}
	if err := r.Start(context.Background()); err != nil {
		return err
	}
	if path := os.Getenv("BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	fmt.Println("ADDR", r.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-sig:
	}
	return r.Stop(context.Background())
}

// peer is a resolver process under test.
type peer struct {
	name string
	addr string
	cmd  *exec.Cmd
	stop func()
}

// cpu returns the process's user+system CPU time so far.
func (p *peer) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func taskset(pin bool, cpu string, argv ...string) *exec.Cmd {
	// BENCH_WRAP_<NAME> (e.g. "strace -f -c -o /tmp/s.txt") prefixes a
	// peer's command, for profiling by hand.
	name := "BLUEPRINT"
	if strings.Contains(argv[0], "unbound") {
		name = "UNBOUND"
	}
	if w := os.Getenv("BENCH_WRAP_" + name); w != "" {
		argv = append(strings.Fields(w), argv...)
	}
	if pin {
		if _, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{"taskset", "-c", cpu}, argv...)
		}
	}
	return exec.Command(argv[0], argv[1:]...)
}

func startBlueprint(h *nstest.Hierarchy, pin bool) (*peer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := taskset(pin, "0", exe, "-serve", "-root", h.RootHints[0], "-port", strconv.Itoa(h.Port))
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1") // one core, as Unbound's one thread
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		cmd.Process.Kill()
		return nil, fmt.Errorf("blueprint resolver did not start: %q %v", line, err)
	}
	return &peer{name: "blueprint", addr: strings.TrimSpace(line[5:]), cmd: cmd, stop: func() {
		in.Close()
		cmd.Wait()
	}}, nil
}

func startUnbound(h *nstest.Hierarchy, dir string, port int, pin bool) (*peer, error) {
	bin, err := exec.LookPath("unbound")
	if err != nil {
		bin = "/usr/sbin/unbound"
	}
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
    module-config: "iterator"
    qname-minimisation: yes
    minimal-responses: yes
    prefetch: no
    msg-cache-size: 64m
    rrset-cache-size: 128m
    num-queries-per-thread: 4096
    outgoing-range: 8192
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
remote-control:
    control-enable: no
%[3]s`, port, dir, h.UnboundStubs(), filepath.Join(dir, "unbound.pid"))
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := taskset(pin, "0", bin, "-d", "-c", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start unbound: %w", err)
	}
	p := &peer{name: "unbound", addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, stop: func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := new(dns.Msg)
		m.SetQuestion(h.Zone, dns.TypeSOA)
		c := &dns.Client{Timeout: 300 * time.Millisecond}
		if r, _, err := c.Exchange(m, p.addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("unbound did not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pinSelf(pin bool) {
	if !pin {
		return
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return
	}
	// Everything of this process (generator, authoritative servers) off
	// CPU 0, where the resolver under test runs.
	n := numCPU()
	if n < 2 {
		return
	}
	exec.Command("taskset", "-a", "-p", "-c", fmt.Sprintf("1-%d", n-1), strconv.Itoa(os.Getpid())).Run()
}

// freePort returns a port free for TCP (and very likely UDP) on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
