//go:build unix

package idgen

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdServer is a throwaway etcd started from the installed binary.
type etcdServer struct {
	cmd *exec.Cmd
	cli *clientv3.Client
	url string
}

// startEtcd starts etcd on free loopback ports with its own data directory
// and stops it at cleanup. A missing binary fails the test.
func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/etcd"); serr != nil {
			t.Fatalf("etcd binary not found (%v): apt-get install etcd-server", err)
		}
		bin = "/usr/bin/etcd"
	}
	client, peer := "http://"+freeAddr(t), "http://"+freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--name", "default",
		"--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer,
		"--log-level", "error", "--logger", "zap")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	s := &etcdServer{cmd: cmd, url: client}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("etcd output:\n%s", logs.String())
		}
	})
	s.cli = etcdClient(t, client)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not ready after 30s: %v\n%s", client, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func etcdClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newEtcdLeaser(t *testing.T, cli *clientv3.Client, prefix string, ttl time.Duration) *EtcdLeaser {
	t.Helper()
	l, err := NewEtcdLeaser(EtcdConfig{Client: cli, Prefix: prefix, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestEtcdConfig(t *testing.T) {
	if _, err := NewEtcdLeaser(EtcdConfig{}); err == nil {
		t.Fatal("no client accepted")
	}
	cli := &clientv3.Client{}
	for _, ttl := range []time.Duration{time.Second, 2500 * time.Millisecond} {
		if _, err := NewEtcdLeaser(EtcdConfig{Client: cli, TTL: ttl}); err == nil {
			t.Fatalf("TTL %v accepted", ttl)
		}
	}
}

// TestEtcd runs the etcd backend against a real etcd, one server for all
// the subtests, each under its own key prefix.
func TestEtcd(t *testing.T) {
	srv := startEtcd(t)
	ctx := context.Background()

	t.Run("Distinct", func(t *testing.T) {
		var (
			mu     sync.Mutex
			leases []Lease
			wg     sync.WaitGroup
		)
		for range MaxWorker + 1 {
			wg.Go(func() {
				// A client and a leaser each, as separate processes would.
				l, err := newEtcdLeaser(t, etcdClient(t, srv.url), "/t/distinct/", 5*time.Second).Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				leases = append(leases, l)
				mu.Unlock()
			})
		}
		wg.Wait()
		seen := map[int]bool{}
		for _, l := range leases {
			if seen[l.ID()] {
				t.Fatalf("worker id %d leased twice", l.ID())
			}
			seen[l.ID()] = true
		}
		if len(seen) != MaxWorker+1 {
			t.Fatalf("%d leases", len(seen))
		}
		if _, err := newEtcdLeaser(t, srv.cli, "/t/distinct/", 5*time.Second).Acquire(ctx); !errors.Is(err, ErrNoFreeWorker) {
			t.Fatalf("33rd acquire: %v", err)
		}
		if err := leases[3].Release(ctx, 4242); err != nil {
			t.Fatal(err)
		}
		again, err := newEtcdLeaser(t, srv.cli, "/t/distinct/", 5*time.Second).Acquire(ctx)
		if err != nil || again.ID() != leases[3].ID() || again.HighWater() != 4242 {
			t.Fatalf("reacquire after release: %v %v", again, err)
		}
		for _, l := range append(leases, again) {
			l.Release(ctx, 0)
		}
		resp, _ := srv.cli.Get(ctx, "/t/distinct/workers/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if resp.Count != 0 {
			t.Fatalf("%d worker keys left after release", resp.Count)
		}
	})

	t.Run("Deposed", func(t *testing.T) {
		el := newEtcdLeaser(t, srv.cli, "/t/deposed/", 5*time.Second)
		l1, err := el.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := l1.SetHighWater(ctx, 100); err != nil {
			t.Fatal(err)
		}
		// Someone deletes the key and another holder creates it anew.
		srv.cli.Delete(ctx, "/t/deposed/workers/0")
		l2, err := el.Acquire(ctx)
		if err != nil || l2.ID() != 0 || l2.HighWater() != 100 {
			t.Fatalf("second holder: %v %v", l2, err)
		}
		if err := l2.SetHighWater(ctx, 200); err != nil {
			t.Fatal(err)
		}
		if err := l1.SetHighWater(ctx, 150); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("deposed SetHighWater: %v", err)
		}
		select {
		case <-l1.Lost():
		default:
			t.Fatal("Lost not closed for the deposed holder")
		}
		l1.Release(ctx, 50) // must not touch the new holder's mark or key
		resp, _ := srv.cli.Get(ctx, "/t/deposed/hwm/0")
		if string(resp.Kvs[0].Value) != "200" {
			t.Fatalf("mark after deposed release: %s", resp.Kvs[0].Value)
		}
		if resp, _ := srv.cli.Get(ctx, "/t/deposed/workers/0"); resp.Count != 1 {
			t.Fatal("deposed release deleted the new holder's key")
		}
		l2.Release(ctx, 200)
	})

	// Revoke: the etcd lease is revoked behind the generator's back (as
	// when it expired): Lost fires, the generator refuses, then gets a new
	// lease and goes on above its own IDs.
	t.Run("Revoke", func(t *testing.T) {
		g, _ := startTestGen(t, Config{Leaser: newEtcdLeaser(t, srv.cli, "/t/revoke/", 3*time.Second), RetryInterval: 50 * time.Millisecond})
		a := next(t, g, 1)
		resp, err := srv.cli.Get(ctx, "/t/revoke/workers/"+strconv.Itoa(g.WorkerID()))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("worker key: %v", err)
		}
		g.mu.Lock()
		lost := g.lost
		g.mu.Unlock()
		t0 := time.Now()
		if _, err := srv.cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-lost:
		case <-time.After(3 * time.Second):
			t.Fatal("Lost not closed within the TTL after revoke")
		}
		t.Logf("revoke noticed after %v", time.Since(t0))
		if _, err := g.Next(1); !isNoLease(err) {
			// Either refused, or the new lease is in already.
			if err != nil || g.WorkerID() < 0 {
				t.Fatalf("Next right after loss: %v", err)
			}
		}
		// WorkerID can still show the lost lease's ID for a moment after Lost
		// closes, so wait until the generator issues again.
		waitFor(t, 5*time.Second, "a new lease", func() bool {
			_, err := g.Next(1)
			return err == nil
		})
		if b := next(t, g, 1); b <= a {
			t.Fatalf("after reacquire: %d <= %d", b, a)
		}
		if value(g.m.losses) != 1 {
			t.Fatalf("losses = %v", value(g.m.losses))
		}
	})

	// Partition: etcd is paused with SIGSTOP. The holder cannot renew, so
	// it stops issuing IDs before etcd could expire the lease (Expires is
	// TTL/20 earlier), and when etcd is back it gets a lease again.
	t.Run("Partition", func(t *testing.T) {
		ttl := 2 * time.Second
		g, _ := startTestGen(t, Config{Leaser: newEtcdLeaser(t, srv.cli, "/t/partition/", ttl), RetryInterval: 50 * time.Millisecond, OpTimeout: time.Second})
		a := next(t, g, 2)
		g.mu.Lock()
		lost, lease := g.lost, g.lease
		g.mu.Unlock()
		t0 := time.Now()
		srv.cmd.Process.Signal(syscall.SIGSTOP)
		stopped := true
		defer func() {
			if stopped {
				srv.cmd.Process.Signal(syscall.SIGCONT)
			}
		}()
		// IDs keep coming while the lease is valid and the stored mark
		// covers them; none may come once the lease is given up, which
		// must happen before etcd could expire it.
		lostAt := make(chan time.Duration, 1)
		go func() { <-lost; lostAt <- time.Since(t0) }()
		var issued, refused int
		var lastOK time.Duration
		for time.Since(t0) < ttl+500*time.Millisecond {
			_, err := g.Next(2)
			switch {
			case err == nil:
				lastOK = time.Since(t0)
				issued++
			case isNoLease(err) || errors.Is(err, ErrHighWater):
				refused++
			default:
				t.Fatalf("Next during the partition: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		var gaveUp time.Duration
		select {
		case gaveUp = <-lostAt:
		default:
			t.Fatal("Lost not closed a TTL into the partition")
		}
		exp := lease.Expires().Sub(t0)
		if exp >= ttl || gaveUp > ttl || lastOK >= exp {
			t.Fatalf("lease expiry %v, given up at %v, last ID at %v: want all before the TTL %v, last ID before expiry", exp, gaveUp, lastOK, ttl)
		}
		if _, err := g.Next(2); !isNoLease(err) {
			t.Fatalf("Next with the lease lost and etcd down: %v", err)
		}
		t.Logf("partition: %d IDs issued (the last %v in), %d refused; lease expiry %v in, given up at %v (TTL %v)", issued, lastOK, refused, exp, gaveUp, ttl)
		srv.cmd.Process.Signal(syscall.SIGCONT)
		stopped = false
		waitFor(t, 15*time.Second, "a new lease after etcd resumed", func() bool { return g.WorkerID() >= 0 })
		if b := next(t, g, 2); b <= a {
			t.Fatalf("after the partition: %d <= %d", b, a)
		}
	})

	// Restart: the mark survives the lease; a generator with its clock 5s
	// behind refuses, one 100ms behind issues above the old IDs.
	t.Run("Restart", func(t *testing.T) {
		el := newEtcdLeaser(t, srv.cli, "/t/restart/", 5*time.Second)
		cfg := Config{Leaser: el, Reserve: 200 * time.Millisecond, MaxBackwards: 200 * time.Millisecond}
		a, _ := newTestGen(t, cfg)
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		var last int64
		for i := range 20000 {
			last = next(t, a, i&MaxShard)
		}
		if err := a.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		resp, _ := srv.cli.Get(ctx, "/t/restart/hwm/0")
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != strconv.FormatInt(unixMs(last), 10) {
			t.Fatalf("mark after Stop = %v, want %d", resp.Kvs, unixMs(last))
		}
		b, clk := newTestGen(t, cfg)
		clk.shift(-5 * time.Second)
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Next(0); !errors.Is(err, ErrClockBackwards) {
			t.Fatalf("clock 5s behind the mark: %v", err)
		}
		b.Stop(ctx)
		c, clk := newTestGen(t, cfg)
		clk.shift(-100 * time.Millisecond)
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer c.Stop(ctx)
		if id := next(t, c, 0); unixMs(id) <= unixMs(last) {
			t.Fatalf("after restart at %d ms, before at %d", unixMs(id), unixMs(last))
		}
	})
}
