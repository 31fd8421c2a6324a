// Package e2e tests the whole platform through its public API (the client
// package), with every role in one process on free ports, and with the
// worker as a separate process.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/app"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/telemetry"
)

// platform is a running Blueprint for one test.
type platform struct {
	app  *app.App
	cfg  config.Config
	urls app.URLs
	dir  string
}

// startPlatform runs the roles in one process on free loopback ports.
// mutate may change the config first.
func startPlatform(t *testing.T, mutate func(*config.Config)) *platform {
	t.Helper()
	requireTool(t, "ffmpeg")
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.Edge.Addr = "127.0.0.1:0"
	cfg.LB.HealthInterval = 200 * time.Millisecond
	cfg.Gateway.RateLimit = 1000
	cfg.Gateway.RateBurst = 1000
	cfg.Upload.MaxBytes = 64 << 20
	cfg.Worker.Preset = "ultrafast"
	cfg.Lock.TTL = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logw := io.Discard
	if testing.Verbose() {
		logw = &testLogWriter{t: t}
	}
	a := app.New(cfg, telemetry.NewLogger(logw, "info", "text"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return &platform{app: a, cfg: cfg, urls: a.URLs(), dir: dir}
}

type testLogWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// requireTool fails (never skips) when a binary the platform needs is
// missing, naming the Debian package that provides it.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		pkg := map[string]string{"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "chromium": "chromium"}[name]
		t.Fatalf("%s is not installed: apt-get install %s (make test installs it when run as root)", name, pkg)
	}
}

// user signs up a fresh account and returns a logged-in client.
func (p *platform) user(t *testing.T, name string) *client.Client {
	t.Helper()
	ctx := context.Background()
	c := client.New(p.urls.Gateway)
	if _, err := c.SignUp(ctx, name, name+"@example.com", "password-"+name); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, name, "password-"+name); err != nil {
		t.Fatal(err)
	}
	return c
}

// makeClip writes a test video made by ffmpeg's lavfi sources.
func makeClip(t *testing.T, path string, w, h, seconds int, audio bool) {
	t.Helper()
	args := []string{"-v", "error", "-y", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30:duration=%d", w, h, seconds)}
	if audio {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:duration=%d", seconds), "-c:a", "aac", "-shortest")
	}
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
}

// failAfter is a reader that breaks after n bytes, like a dropped connection.
type failAfter struct {
	r io.ReadSeeker
	n int64
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, fmt.Errorf("simulated network drop")
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func (f *failAfter) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }

func get(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// variants returns the variant playlist URLs of a master playlist.
func variants(t *testing.T, masterURL string, body []byte) []string {
	t.Helper()
	base, _ := url.Parse(masterURL)
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	next := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			next = true
		case next && line != "" && !strings.HasPrefix(line, "#"):
			ref, _ := url.Parse(line)
			out = append(out, base.ResolveReference(ref).String())
			next = false
		}
	}
	return out
}

// firstSegment returns the URL of the first media segment in a variant
// playlist (the init segment of fMP4 counts as the first object to fetch).
func firstSegment(t *testing.T, playlistURL string, body []byte) string {
	t.Helper()
	base, _ := url.Parse(playlistURL)
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			ref, _ := url.Parse(line)
			return base.ResolveReference(ref).String()
		}
	}
	t.Fatalf("no segment in %s:\n%s", playlistURL, body)
	return ""
}

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

func clipDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "clips")
	os.MkdirAll(d, 0o755)
	return d
}

// waitTranscoding waits until a video's transcode is under way (progress
// reported), failing if it finishes first.
func waitTranscoding(ctx context.Context, t *testing.T, c *client.Client, id string) {
	t.Helper()
	for {
		v, err := c.Video(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status != "processing" {
			t.Fatalf("video finished (%s) before the transcode could be interrupted; make the clip longer", v.Status)
		}
		if v.Progress > 0 {
			t.Logf("transcode under way at %.1f%%", v.Progress*100)
			return
		}
		if ctx.Err() != nil {
			t.Fatal("transcode never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testDB is read access to a platform's SQLite database.
type testDB struct{ db *sqlstore.DB }

func openDB(t *testing.T, p *platform) testDB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(p.dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return testDB{db}
}

func (d testDB) countFences(resource string) (int, error) {
	var n int
	err := d.db.R.QueryRow(`SELECT COUNT(*) FROM fences WHERE resource = ?`, resource).Scan(&n)
	return n, err
}
