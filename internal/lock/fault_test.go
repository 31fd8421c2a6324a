package lock_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Environment of the helper holder process.
const (
	envHelperDSN   = "BLUEPRINT_LOCK_HELPER_DSN"
	envHelperName  = "BLUEPRINT_LOCK_HELPER_NAME"
	envHelperFence = "BLUEPRINT_LOCK_HELPER_FENCE"
	envHelperEtcd  = "BLUEPRINT_LOCK_HELPER_ETCD" // lock on etcd at this endpoint instead of PostgreSQL
	faultTTL       = 300 * time.Millisecond
)

const registerSchema = `CREATE TABLE IF NOT EXISTS registers (
	id TEXT PRIMARY KEY, value BIGINT NOT NULL, token BIGINT NOT NULL)`

// writeRegister writes value to register id under token, through the fence
// when fenced is set. It reports whether the write was accepted.
func writeRegister(ctx context.Context, conn *pgx.Conn, id string, token uint64, value int64, fenced bool) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if fenced {
		err := lock.FencedUpdatePgx(ctx, tx, "register/"+id, token)
		if errors.Is(err, lock.ErrStaleToken) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE registers SET value = $2, token = $3 WHERE id = $1`, id, value, int64(token)); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// TestHelperHolder is not a test: it is the lock holder process that
// TestFaultPausedHolder starts (this binary, re-executed with
// -test.run=TestHelperHolder and BLUEPRINT_LOCK_HELPER_DSN set) and pauses
// with SIGSTOP. It reads commands on stdin: "lock", "write <value>",
// "unlock", and answers one line per command. Without the environment
// variable it returns at once.
func TestHelperHolder(t *testing.T) {
	dsn := os.Getenv(envHelperDSN)
	if dsn == "" {
		return
	}
	var err error
	name := os.Getenv(envHelperName)
	fenced := os.Getenv(envHelperFence) == "1"
	ctx := context.Background()
	var l lock.Locker
	if ep := os.Getenv(envHelperEtcd); ep != "" {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			fmt.Println("err", err)
			os.Exit(2)
		}
		l = lock.NewEtcd(cli, "", lock.Options{TTL: time.Second})
	} else {
		l, err = lock.NewPostgres(ctx, dsn, lock.Options{TTL: faultTTL, MaxPoll: 10 * time.Millisecond, MaxConns: 2})
		if err != nil {
			fmt.Println("err", err)
			os.Exit(2)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Println("err", err)
		os.Exit(2)
	}
	var (
		lease   *lock.Lease
		resumed time.Time
	)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "lock":
			lease, err = l.Lock(ctx, name)
			if err != nil {
				fmt.Println("err", err)
				continue
			}
			fmt.Println("locked", lease.Token)
		case "write":
			// Deliberately no look at lease.Lost(): this models a holder
			// that checked the lease, was paused, and writes on resume.
			resumed = time.Now()
			v, _ := strconv.ParseInt(arg, 10, 64)
			ok, err := writeRegister(ctx, conn, name, lease.Token, v, fenced)
			switch {
			case err != nil:
				fmt.Println("err", err)
			case ok:
				fmt.Println("ok")
			default:
				fmt.Println("stale")
			}
		case "unlock":
			// Report whether (and how soon after the last write command,
			// i.e. after the resume) the lease told us it was lost.
			lost := int64(-1)
			select {
			case <-lease.Lost():
				lost = time.Since(resumed).Microseconds()
			case <-time.After(2 * time.Second):
			}
			lease.Unlock(ctx)
			fmt.Println("unlocked", lost)
		}
	}
	os.Exit(0)
}

// holderProc is a running helper holder.
type holderProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startHolder(t *testing.T, dsn, etcd, name string, fenced bool) *holderProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHolder$", "-test.count=1")
	fence := "0"
	if fenced {
		fence = "1"
	}
	cmd.Env = append(os.Environ(), envHelperDSN+"="+dsn, envHelperName+"="+name, envHelperFence+"="+fence, envHelperEtcd+"="+etcd)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return &holderProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

// send writes a command and returns the reply line.
func (h *holderProc) send(cmd string) (string, error) {
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		return "", err
	}
	return h.reply()
}

func (h *holderProc) reply() (string, error) {
	if !h.out.Scan() {
		return "", fmt.Errorf("holder exited: %v", h.out.Err())
	}
	return h.out.Text(), nil
}

// regInput and regOutput are the operations of the fenced register model.
type regInput struct {
	write bool
	token uint64
	value int64
	reg   string
}

type regOutput struct {
	ok    bool // write accepted
	value int64
	token uint64
}

type regState struct {
	value int64
	token uint64
}

// fencedRegister is a porcupine model of a register that accepts a write
// only when its token is at least the newest accepted token.
var fencedRegister = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			r := op.Input.(regInput).reg
			if _, ok := by[r]; !ok {
				keys = append(keys, r)
			}
			by[r] = append(by[r], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(regState), input.(regInput), output.(regOutput)
		if !in.write {
			return out.value == s.value && out.token == s.token, s
		}
		accept := in.token >= s.token
		if out.ok != accept {
			return false, s
		}
		if accept {
			return true, regState{value: in.value, token: in.token}
		}
		return true, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.write {
			return fmt.Sprintf("write(%d, token %d) -> %v", in.value, in.token, out.ok)
		}
		return fmt.Sprintf("read() -> %d (token %d)", out.value, out.token)
	},
}

// faultResult summarises one run of pause events.
type faultResult struct {
	events, staleAccepted, staleRejected int
	lostSeen                             int
	maxLostAfter                         time.Duration // upper bound, from resume to Lost observed
	history                              []porcupine.Operation
}

// faultBackend says where the locks live: PostgreSQL at the test's DSN, or
// etcd at etcd (registers and fences are on PostgreSQL either way).
type faultBackend struct {
	dsn  string
	etcd string
	cli  *clientv3.Client
}

func (b faultBackend) newLocker(ctx context.Context) (lock.Locker, error) {
	if b.cli != nil {
		return lock.NewEtcd(b.cli, "", lock.Options{TTL: time.Second}), nil
	}
	return lock.NewPostgres(ctx, b.dsn, lock.Options{TTL: faultTTL, MaxPoll: 10 * time.Millisecond, MaxConns: 2})
}

// runPauseEvents runs workers holders in parallel, each through events
// pause events on its own lock and register.
func runPauseEvents(t *testing.T, be faultBackend, workers, events int, fenced bool) faultResult {
	dsn := be.dsn
	ctx := context.Background()
	setup, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, registerSchema); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, lock.FenceSchema); err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	var (
		mu  sync.Mutex
		res faultResult
		wg  sync.WaitGroup
	)
	record := func(op porcupine.Operation) {
		mu.Lock()
		res.history = append(res.history, op)
		mu.Unlock()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reg := fmt.Sprintf("reg-%s-%d", run, w)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, `INSERT INTO registers (id, value, token) VALUES ($1, 0, 0)`, reg); err != nil {
				t.Error(err)
				return
			}
			other, err := be.newLocker(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer other.Close()
			h := startHolder(t, dsn, be.etcd, reg, fenced)
			child, parent := 2*w, 2*w+1
			value := int64(0)
			for e := range events {
				if err := pauseEvent(ctx, h, other, conn, reg, fenced, child, parent, &value, record, &mu, &res); err != nil {
					t.Errorf("worker %d event %d: %v", w, e, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// pauseEvent is one SIGSTOP event: the helper locks and writes, is
// stopped, the other client waits out the TTL, locks and writes, and the
// helper is resumed with a write already queued on its stdin.
func pauseEvent(ctx context.Context, h *holderProc, other lock.Locker, conn *pgx.Conn, reg string, fenced bool,
	child, parent int, value *int64, record func(porcupine.Operation), mu *sync.Mutex, res *faultResult) error {
	now := func() int64 { return time.Now().UnixNano() }
	line, err := h.send("lock")
	if err != nil {
		return err
	}
	old, err := strconv.ParseUint(strings.TrimPrefix(line, "locked "), 10, 64)
	if err != nil {
		return fmt.Errorf("helper lock: %q", line)
	}
	*value++
	call := now()
	if line, err = h.send(fmt.Sprint("write ", *value)); err != nil || line != "ok" {
		return fmt.Errorf("helper write while holding: %q %v", line, err)
	}
	record(porcupine.Operation{ClientId: child, Input: regInput{write: true, token: old, value: *value, reg: reg}, Call: call, Output: regOutput{ok: true}, Return: now()})

	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	lease, err := other.Lock(lctx, reg) // succeeds only once the paused lease expired
	cancel()
	if err != nil {
		h.cmd.Process.Signal(syscall.SIGCONT)
		return fmt.Errorf("take over: %w", err)
	}
	if lease.Token <= old {
		return fmt.Errorf("new token %d not greater than paused holder's %d", lease.Token, old)
	}
	*value++
	call = now()
	ok, err := writeRegister(ctx, conn, reg, lease.Token, *value, fenced)
	if err != nil || !ok {
		return fmt.Errorf("new holder's write: ok=%v err=%v", ok, err)
	}
	record(porcupine.Operation{ClientId: parent, Input: regInput{write: true, token: lease.Token, value: *value, reg: reg}, Call: call, Output: regOutput{ok: true}, Return: now()})

	// Queue the stale write, then resume the paused holder.
	*value++
	call = now()
	if _, err := fmt.Fprintln(h.in, "write", *value); err != nil {
		return err
	}
	if err := h.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	line, err = h.reply()
	if err != nil || (line != "ok" && line != "stale") {
		return fmt.Errorf("stale write: %q %v", line, err)
	}
	record(porcupine.Operation{ClientId: child, Input: regInput{write: true, token: old, value: *value, reg: reg}, Call: call, Output: regOutput{ok: line == "ok"}, Return: now()})
	mu.Lock()
	res.events++
	if line == "ok" {
		res.staleAccepted++
	} else {
		res.staleRejected++
	}
	mu.Unlock()

	call = now()
	var v, tok int64
	if err := conn.QueryRow(ctx, `SELECT value, token FROM registers WHERE id = $1`, reg).Scan(&v, &tok); err != nil {
		return err
	}
	record(porcupine.Operation{ClientId: parent, Input: regInput{reg: reg}, Call: call, Output: regOutput{value: v, token: uint64(tok)}, Return: now()})
	if err := lease.Unlock(ctx); err != nil {
		return fmt.Errorf("new holder's unlock: %w", err)
	}
	if line, err = h.send("unlock"); err != nil || !strings.HasPrefix(line, "unlocked ") {
		return fmt.Errorf("helper unlock: %q %v", line, err)
	}
	if us, err := strconv.ParseInt(strings.TrimPrefix(line, "unlocked "), 10, 64); err == nil && us >= 0 {
		mu.Lock()
		res.lostSeen++
		res.maxLostAfter = max(res.maxLostAfter, time.Duration(us)*time.Microsecond)
		mu.Unlock()
	}
	return nil
}

func TestFaultPausedHolder(t *testing.T) {
	dsn := startPostgres(t)
	pg := faultBackend{dsn: dsn}

	t.Run("PostgresFenced", func(t *testing.T) {
		res := runPauseEvents(t, pg, 5, 21, true)
		if res.events < 100 {
			t.Fatalf("%d pause events, want at least 100", res.events)
		}
		if res.staleAccepted != 0 {
			t.Fatalf("%d stale writes accepted out of %d pause events, want 0", res.staleAccepted, res.events)
		}
		if r := porcupine.CheckOperationsTimeout(fencedRegister, res.history, 10*time.Second); r != porcupine.Ok {
			t.Fatalf("history of %d operations: %s, want Ok (linearizable)", len(res.history), r)
		}
		if res.lostSeen != res.events {
			t.Fatalf("paused holder saw Lost in %d of %d events, want all", res.lostSeen, res.events)
		}
		t.Logf("%d pause events, %d stale writes rejected, %d operations linearizable; Lost seen in all, at most %v after resume",
			res.events, res.staleRejected, len(res.history), res.maxLostAfter)
	})

	t.Run("PostgresUnfencedControl", func(t *testing.T) {
		res := runPauseEvents(t, pg, 4, 3, false)
		if res.staleAccepted == 0 {
			t.Fatalf("no stale write accepted in %d unfenced pause events: the test cannot see the hazard", res.events)
		}
		if r := porcupine.CheckOperationsTimeout(fencedRegister, res.history, 10*time.Second); r != porcupine.Illegal {
			t.Fatalf("unfenced history checked %s, want Illegal", r)
		}
		t.Logf("%d unfenced pause events, %d stale writes accepted, history not linearizable", res.events, res.staleAccepted)
	})

	// The same on the production backend: etcd's session TTL is at least
	// 1 s, so fewer events; tokens are lock-key CreateRevisions.
	t.Run("EtcdFenced", func(t *testing.T) {
		cli := startEtcd(t)
		be := faultBackend{dsn: dsn, etcd: cli.Endpoints()[0], cli: cli}
		res := runPauseEvents(t, be, 4, 3, true)
		if res.events != 12 {
			t.Fatalf("%d pause events, want 12", res.events)
		}
		if res.staleAccepted != 0 {
			t.Fatalf("%d stale writes accepted out of %d pause events, want 0", res.staleAccepted, res.events)
		}
		if res.lostSeen != res.events {
			t.Fatalf("paused holder saw Lost in %d of %d events, want all", res.lostSeen, res.events)
		}
		if r := porcupine.CheckOperationsTimeout(fencedRegister, res.history, 10*time.Second); r != porcupine.Ok {
			t.Fatalf("history of %d operations: %s, want Ok (linearizable)", len(res.history), r)
		}
		t.Logf("etcd: %d pause events, %d stale writes rejected, linearizable; Lost seen at most %v after resume",
			res.events, res.staleRejected, res.maxLostAfter)
	})
}
