package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a throwaway redis-server on a free loopback port, with nothing
// persisted. Stop and Start restart it on the same port (empty).
type Redis struct {
	Addr string
	t    testing.TB
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts a redis-server, stopped when the test ends.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), t: t, dir: t.TempDir(), args: args}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// StartRedisCluster starts n redis-servers in cluster mode (masters only)
// and joins them with redis-cli --cluster create; it returns their
// addresses once the cluster state is ok.
func StartRedisCluster(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		r := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs = append(addrs, r.Addr)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli is not installed: apt-get install redis-tools")
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, a := range addrs {
			host, port, _ := net.SplitHostPort(a)
			info, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if !strings.Contains(string(info), "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return addrs
		}
		if time.Now().After(deadline) {
			t.Fatal("redis cluster not ok after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Start starts the server (again) and waits until it accepts connections.
func (r *Redis) Start() {
	t := r.t
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed: apt-get install redis-server (make test installs it as root)")
	}
	_, port, _ := net.SplitHostPort(r.Addr)
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no")
	r.cmd.Args = append(r.cmd.Args, r.args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r.done = make(chan struct{})
	go func() { r.cmd.Wait(); logf.Close(); close(r.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-r.done:
			b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			t.Fatalf("redis-server exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not listen in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Process.Kill()
	<-r.done
}

// RedisClient returns a client of the Redis at addr, closed when the test
// ends.
func RedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}
