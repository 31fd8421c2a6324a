//go:build unix

package idgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHelperProcess is not a test: the cross-process tests run the test
// binary again with IDGEN_HELPER set, and this is what the copy does.
//
//	hold   acquire a file lease, print "worker N", hold it until stdin closes
//	issue  run a generator on the file leaser and write its IDs to stdout,
//	       8 bytes each, until killed
func TestHelperProcess(t *testing.T) {
	mode, dir := os.Getenv("IDGEN_HELPER"), os.Getenv("IDGEN_DIR")
	if mode == "" {
		return
	}
	ctx := context.Background()
	switch mode {
	case "hold":
		l, err := NewFileLeaser(dir).Acquire(ctx)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("worker", l.ID())
		io.Copy(io.Discard, os.Stdin)
		l.Release(ctx, l.HighWater())
	case "issue":
		g, err := New(Config{Leaser: NewFileLeaser(dir), Reserve: 100 * time.Millisecond})
		if err == nil {
			err = g.Start(ctx)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		w := bufio.NewWriterSize(os.Stdout, 1<<16)
		var b [8]byte
		for i := 0; ; i++ {
			id, err := g.Next(i & 255)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			binary.LittleEndian.PutUint64(b[:], uint64(id))
			w.Write(b[:])
			if i%1024 == 1023 {
				if err := w.Flush(); err != nil {
					os.Exit(1)
				}
			}
		}
	}
	os.Exit(0)
}

// helper starts the test binary as a helper process in mode on dir.
func helper(t *testing.T, mode, dir string) (*exec.Cmd, io.WriteCloser, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), "IDGEN_HELPER="+mode, "IDGEN_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, stdin, stdout
}

func TestFileLeaserDistinct(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var (
		mu     sync.Mutex
		leases []Lease
		wg     sync.WaitGroup
	)
	for range MaxWorker + 1 {
		wg.Go(func() {
			l, err := NewFileLeaser(dir).Acquire(ctx) // a leaser each, as in separate processes
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
	if _, err := NewFileLeaser(dir).Acquire(ctx); !errors.Is(err, ErrNoFreeWorker) {
		t.Fatalf("33rd acquire: %v", err)
	}
	l := leases[7]
	if err := l.Release(ctx, 1234); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost not closed by Release")
	}
	if err := l.SetHighWater(ctx, 5); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("SetHighWater after Release: %v", err)
	}
	again, err := NewFileLeaser(dir).Acquire(ctx)
	if err != nil || again.ID() != l.ID() || again.HighWater() != 1234 {
		t.Fatalf("reacquire: %v %v", again, err)
	}
	for _, l := range leases {
		l.Release(ctx, 0)
	}
}

func TestFileLeaserMark(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	fl := NewFileLeaser(dir)
	l, err := fl.Acquire(ctx)
	if err != nil || l.ID() != 0 || l.HighWater() != 0 || !l.Expires().IsZero() {
		t.Fatalf("first lease: %v %v", l, err)
	}
	if err := l.SetHighWater(ctx, 1700000000123); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(fl.Dir(), "worker-00"))
	if string(b) != "00000001700000000123\n" {
		t.Fatalf("lock file holds %q", b)
	}
	// A replaced lock file means another process may lock the new one.
	path := filepath.Join(fl.Dir(), "worker-00")
	os.Remove(path)
	os.WriteFile(path, nil, 0o640)
	if err := l.SetHighWater(ctx, 1700000000200); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("SetHighWater on a replaced file: %v", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost not closed after the file was replaced")
	}
	l.Release(ctx, 0)
	// A corrupt mark is an error, never read as zero.
	os.WriteFile(path, []byte("garbage\n"), 0o640)
	if _, err := fl.Acquire(ctx); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt mark: %v", err)
	}
}

// TestFileLeaserCrossProcess: helper processes and this one lease from the
// same directory and all get distinct worker IDs; a helper killed with
// SIGKILL frees its worker ID at once.
func TestFileLeaserCrossProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	type held struct {
		cmd *exec.Cmd
		id  int
	}
	var (
		mu    sync.Mutex
		ids   = map[int]string{}
		procs []held
		wg    sync.WaitGroup
	)
	claim := func(id int, who string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := ids[id]; ok {
			t.Errorf("worker id %d held by %s and %s", id, prev, who)
		}
		ids[id] = who
	}
	for i := range 6 {
		cmd, _, out := helper(t, "hold", dir)
		wg.Go(func() {
			line, err := bufio.NewReader(out).ReadString('\n')
			var id int
			if _, serr := fmt.Sscanf(line, "worker %d", &id); err != nil || serr != nil {
				t.Errorf("helper %d said %q: %v", i, line, err)
				return
			}
			claim(id, fmt.Sprintf("process %d", cmd.Process.Pid))
			mu.Lock()
			procs = append(procs, held{cmd, id})
			mu.Unlock()
		})
	}
	var mine []Lease
	for range 6 {
		wg.Go(func() {
			l, err := NewFileLeaser(dir).Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			claim(l.ID(), "this process")
			mu.Lock()
			mine = append(mine, l)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(ids) != 12 {
		t.Fatalf("%d distinct worker ids, want 12", len(ids))
	}
	// Kill the helper with the lowest worker ID: that ID is the lowest free.
	victim := procs[0]
	for _, p := range procs {
		if p.id < victim.id {
			victim = p
		}
	}
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.cmd.Wait()
	l, err := NewFileLeaser(dir).Acquire(ctx)
	if err != nil || l.ID() != victim.id {
		t.Fatalf("after SIGKILL of the holder of %d: got %v, %v", victim.id, l, err)
	}
	for _, l := range append(mine, l) {
		l.Release(ctx, 0)
	}
}

// TestFileCrashRestart: a generator process is killed with SIGKILL while it
// issues IDs; a generator in this process takes over its worker ID with
// the clock 100ms behind, and issues only IDs above all of the dead one's.
func TestFileCrashRestart(t *testing.T) {
	dir := t.TempDir()
	cmd, _, out := helper(t, "issue", dir)
	r := bufio.NewReaderSize(out, 1<<16)
	var theirs []int64
	var b [8]byte
	for len(theirs) < 300_000 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			t.Fatalf("after %d ids from the helper: %v", len(theirs), err)
		}
		theirs = append(theirs, int64(binary.LittleEndian.Uint64(b[:])))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			break
		}
		theirs = append(theirs, int64(binary.LittleEndian.Uint64(b[:])))
	}
	cmd.Wait()
	var maxMs int64
	for _, id := range theirs {
		maxMs = max(maxMs, unixMs(id))
	}
	worker := Worker(theirs[0])
	f, err := os.Open(filepath.Join(dir, "idgen", fmt.Sprintf("worker-%02d", worker)))
	if err != nil {
		t.Fatal(err)
	}
	mark, err := readMark(f)
	f.Close()
	if err != nil || mark < maxMs {
		t.Fatalf("mark %d left by the dead generator is below its IDs (%d): %v", mark, maxMs, err)
	}

	g, clk := startTestGen(t, Config{Leaser: NewFileLeaser(dir), Reserve: 100 * time.Millisecond})
	clk.shift(-100 * time.Millisecond)
	if g.WorkerID() != worker {
		t.Fatalf("successor got worker %d, want the dead one's %d", g.WorkerID(), worker)
	}
	ours, err := g.NextN(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100_000 {
		ours = append(ours, next(t, g, i&255))
	}
	if unixMs(ours[0]) <= maxMs {
		t.Fatalf("successor's first id at %d ms, dead generator's last at %d", unixMs(ours[0]), maxMs)
	}
	all := append(theirs, ours...)
	if d := dups(all); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
	t.Logf("helper issued %d IDs before SIGKILL (last at %d, mark %d); successor started at %d", len(theirs), maxMs, mark, unixMs(ours[0]))
}

// TestFileRestartAfterClockStep: after a clean stop the mark is the last
// millisecond issued; a generator whose clock is 5s behind it refuses, one
// 100ms behind waits and issues above it.
func TestFileRestartAfterClockStep(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cfg := Config{Leaser: NewFileLeaser(dir), Reserve: 200 * time.Millisecond, MaxBackwards: 200 * time.Millisecond}
	a, _ := newTestGen(t, cfg)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 10000 {
		last = next(t, a, i&MaxShard)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
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
	if id := next(t, c, Shard(last)); unixMs(id) <= unixMs(last) || id <= last {
		t.Fatalf("after restart: %d (%d ms), before: %d (%d ms)", id, unixMs(id), last, unixMs(last))
	}
}
