package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// proc is one running server under test.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string // 127.0.0.1:port
	log  string
	done chan struct{}
}

// pinned prefixes argv with "taskset -c cpu" when taskset exists and the
// machine has at least two CPUs (server on CPU 0, load generator on 1).
func pinned(cpu int, argv ...string) []string {
	if runtime.NumCPU() < 2 {
		return argv
	}
	if ts, err := exec.LookPath("taskset"); err == nil {
		return append([]string{ts, "-c", strconv.Itoa(cpu)}, argv...)
	}
	return argv
}

func startProc(name, dir string, env []string, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// stop ends the server and its children (its process group).
func (p *proc) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitReady polls the SOA of bench.test. until the server answers.
func (p *proc) waitReady(timeout time.Duration) error {
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s exited:\n%s", p.name, b)
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion("bench.test.", dns.TypeSOA)
		if r, _, err := c.Exchange(m, p.addr); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(p.log)
	return fmt.Errorf("%s not ready after %v:\n%s", p.name, timeout, b)
}

// cpuSeconds returns the user+system CPU time of the process and all its
// descendants (NSD serves from a child process).
func (p *proc) cpuSeconds() (float64, error) {
	tick := 100.0 // USER_HZ on Linux
	root := p.cmd.Process.Pid
	parents := map[int]int{}
	cpu := map[int]float64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		parents[pid] = ppid
		cpu[pid] = (ut + st) / tick
	}
	total := 0.0
	for pid, c := range cpu {
		for q := pid; q > 1; q = parents[q] {
			if q == root {
				total += c
				break
			}
		}
	}
	if _, ok := cpu[root]; !ok {
		return 0, errors.New("server process gone")
	}
	return total, nil
}

// rssKiB returns the resident set of the process tree's root.
func (p *proc) rssKiB() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// Server launchers. Each runs one worker thread/process on CPU 0.

func startBlueprint(dir, zone string, port int) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, err := startProc("blueprint", dir, []string{"GOMAXPROCS=1"},
		pinned(0, self, "-serve", zone, "-listen", fmt.Sprintf("127.0.0.1:%d", port))...)
	if err != nil {
		return nil, err
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return p, nil
}

func startKnot(dir, zone string, port int) (*proc, error) {
	bin := lookSbin("knotd")
	if bin == "" {
		return nil, errNotInstalled
	}
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
    any: warning
database:
    storage: "%[1]s"
template:
  - id: default
    storage: "%[1]s"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: bench.test.
    file: "%[3]s"
`, kdir, port, zone)
	path := filepath.Join(kdir, "knot.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("knot", dir, nil, pinned(0, bin, "-c", path)...)
	if err != nil {
		return nil, err
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return p, nil
}

func startNSD(dir, zone string, port int) (*proc, error) {
	bin := lookSbin("nsd")
	if bin == "" {
		return nil, errNotInstalled
	}
	ndir := filepath.Join(dir, "nsd")
	os.MkdirAll(ndir, 0o755)
	conf := fmt.Sprintf(`server:
    ip-address: 127.0.0.1@%[2]d
    server-count: 1
    reuseport: yes
    minimal-responses: yes
    database: ""
    username: ""
    chroot: ""
    zonesdir: "%[1]s"
    zonelistfile: "%[1]s/zone.list"
    xfrdfile: "%[1]s/xfrd.state"
    xfrdir: "%[1]s"
    pidfile: "%[1]s/nsd.pid"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: bench.test.
    zonefile: "%[3]s"
`, ndir, port, zone)
	path := filepath.Join(ndir, "nsd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("nsd", dir, nil, pinned(0, bin, "-d", "-c", path)...)
	if err != nil {
		return nil, err
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return p, nil
}

func startCoreDNS(dir, zone string, port int) (*proc, error) {
	bin, err := exec.LookPath("coredns")
	if err != nil {
		gobin := filepath.Join(os.Getenv("HOME"), "go", "bin", "coredns")
		if _, err := os.Stat(gobin); err != nil {
			return nil, errNotInstalled
		}
		bin = gobin
	}
	corefile := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(fmt.Sprintf("bench.test.:%d {\n    bind 127.0.0.1\n    file %s\n}\n", port, zone)), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("coredns", dir, []string{"GOMAXPROCS=1"}, pinned(0, bin, "-conf", corefile)...)
	if err != nil {
		return nil, err
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return p, nil
}

var errNotInstalled = errors.New("not installed")

func lookSbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// ctxDone is a helper for cancellable sleeps.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
