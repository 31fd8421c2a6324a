package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// blueprintBinary builds cmd/blueprint once per test run.
func blueprintBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "blueprint-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "blueprint")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/blueprint")
		cmd.Dir = root
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// startWorker runs the worker role as its own process.
func startWorker(t *testing.T, p *platform, name string) *exec.Cmd {
	t.Helper()
	return startProcess(t, p, name, "--roles", "worker", "--queue-url", p.urls.Broker, "--data-dir", p.dir,
		"--admin-addr", "127.0.0.1:0", "--queue-ack-wait", "2s", "--worker-preset", "ultrafast", "--lock-ttl", "2s")
}

// startProcess runs the blueprint binary with args as a child process whose
// log goes to the test's data directory (and into the test log on failure).
func startProcess(t *testing.T, p *platform, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(blueprintBinary(t), append(args, "--log-format", "text")...)
	logf, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return cmd
}

// TestWorkerKilledMidTranscode: the worker runs as a separate process and is
// killed with SIGKILL while ffmpeg works; the job is redelivered to a new
// worker and the video becomes ready exactly once.
func TestWorkerKilledMidTranscode(t *testing.T) {
	p := startPlatform(t, func(c *config.Config) {
		c.Roles = []string{"gateway", "frontend", "edge", "origin", "broker"}
		c.Broker.Addr = "127.0.0.1:0"
		c.Queue.AckWait = 2 * time.Second
	})
	if p.urls.Broker == "" {
		t.Fatal("broker has no client URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := p.user(t, "kim")
	clip := filepath.Join(clipDir(t), "long.mp4")
	makeClip(t, clip, 1280, 720, 12, true)

	w1 := startWorker(t, p, "worker-1")
	res, err := c.Upload(ctx, clip, client.UploadOptions{Title: "survives a crash"})
	if err != nil {
		t.Fatal(err)
	}
	waitTranscoding(ctx, t, c, res.VideoID)
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w1.Wait()

	// No ffmpeg of the dead worker keeps running.
	deadline := time.Now().Add(5 * time.Second)
	for orphans(t, p.dir) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("ffmpeg of the killed worker is still running")
		}
		time.Sleep(100 * time.Millisecond)
	}

	startWorker(t, p, "worker-2")
	v, err := c.WaitReady(ctx, res.VideoID, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.HLSURL == "" || len(v.Renditions) < 3 {
		t.Fatalf("ready video incomplete: %+v", v)
	}
	resp, body := get(t, v.HLSURL)
	if resp.StatusCode != 200 || len(variants(t, v.HLSURL, body)) < 3 {
		t.Fatalf("master playlist after recovery: %d\n%s", resp.StatusCode, body)
	}

	// Exactly once: one ready transition, at least two attempts.
	time.Sleep(3 * time.Second) // longer than AckWait: a duplicate delivery would show by now
	db, err := sqlstore.Open(ctx, filepath.Join(p.dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var readyEvents, attempts int
	db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE subject_id = ? AND kind = 'video.ready'`, v.ID).Scan(&readyEvents)
	db.R.QueryRow(`SELECT attempts FROM videos WHERE id = ?`, v.ID).Scan(&attempts)
	if readyEvents != 1 {
		t.Fatalf("video.ready events = %d, want exactly 1", readyEvents)
	}
	if attempts < 2 {
		t.Fatalf("attempts = %d, want ≥ 2 (the killed one and the redelivery)", attempts)
	}
	// The outbox relay has published the item's events.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var unpublished int
		db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE subject_id = ? AND published_at IS NULL`, v.ID).Scan(&unpublished)
		if unpublished == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events of the video still unpublished", unpublished)
		}
	}
}

// orphans counts ffmpeg processes working in this test's data directory.
func orphans(t *testing.T, dataDir string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "ffmpeg" {
			cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
			if strings.HasPrefix(cwd, dataDir) || strings.Contains(string(cmdline), dataDir) {
				n++
			}
		}
	}
	return n
}
