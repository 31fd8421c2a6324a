package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clock is a manual clock for freshness math.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// origin is a test origin server that counts the requests it receives and
// remembers the last one's header.
type origin struct {
	*httptest.Server
	clk      *clock
	requests atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc
	last    *http.Request
}

func newOrigin(t *testing.T, clk *clock, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{clk: clk, handler: h}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		o.mu.Lock()
		o.last = r.Clone(context.Background())
		h := o.handler
		o.mu.Unlock()
		// Date by the shared clock, so that the edge's age math sees a
		// consistent origin.
		w.Header().Set("Date", o.clk.Now().UTC().Format(http.TimeFormat))
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) set(h http.HandlerFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handler = h
}

func (o *origin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// static serves body with the given header fields (name, value, ...) and
// answers 304 to a matching If-None-Match.
func static(body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Set(kv[i], kv[i+1])
		}
		if etag := w.Header().Get("ETag"); etag != "" && r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, body)
	}
}

type harness struct {
	e   *Edge
	srv *httptest.Server
	o   *origin
	clk *clock
	reg *prometheus.Registry
	dir string
}

func newHarness(t *testing.T, h http.HandlerFunc, mod func(*Config)) *harness {
	t.Helper()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	o := newOrigin(t, clk, h)
	dir := t.TempDir()
	cfg := Config{Origin: o.URL, CacheDir: dir}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	e, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	e.now = clk.Now
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		srv.Close()
		if err := e.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return &harness{e: e, srv: srv, o: o, clk: clk, reg: reg, dir: dir}
}

// waitForWaiters waits until n requests wait on the fill of key.
func (h *harness) waitForWaiters(t *testing.T, key string, n int) {
	t.Helper()
	waitFor(t, strconv.Itoa(n)+" waiters on "+key, func() bool { return h.e.flights.waiting(key) == n })
}

// do sends a request to the edge with header fields (name, value, ...) and
// returns the response with its body read.
func (h *harness) do(t *testing.T, method, path string, kv ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func (h *harness) get(t *testing.T, path string, kv ...string) (*http.Response, string) {
	t.Helper()
	return h.do(t, http.MethodGet, path, kv...)
}

// files lists the object files in the cache directory.
func (h *harness) files(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(h.dir, filePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantStatus(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status = %d, want %d", resp.StatusCode, code)
	}
}

func wantCacheStatus(t *testing.T, resp *http.Response, want string) {
	t.Helper()
	if got := resp.Header.Get("Cache-Status"); got != want {
		t.Fatalf("Cache-Status = %q, want %q", got, want)
	}
}

func wantOrigin(t *testing.T, o *origin, n int64) {
	t.Helper()
	if got := o.requests.Load(); got != n {
		t.Fatalf("origin requests = %d, want %d", got, n)
	}
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMissThenHit(t *testing.T) {
	h := newHarness(t, static("#EXTM3U\n", "Content-Type", "application/vnd.apple.mpegurl",
		"Cache-Control", "max-age=60", "ETag", `"v1"`, "Set-Cookie", "a=b"), nil)

	resp, body := h.get(t, "/v/1/master.m3u8")
	wantStatus(t, resp, http.StatusOK)
	wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; stored")
	if body != "#EXTM3U\n" {
		t.Fatalf("body = %q", body)
	}

	h.clk.Advance(5 * time.Second)
	resp, body = h.get(t, "/v/1/master.m3u8")
	wantStatus(t, resp, http.StatusOK)
	wantOrigin(t, h.o, 1)
	if cs := resp.Header.Get("Cache-Status"); cs != "blueprint-edge; hit; ttl=55" {
		t.Fatalf("Cache-Status = %q", cs)
	}
	if body != "#EXTM3U\n" {
		t.Fatalf("body = %q", body)
	}
	for k, want := range map[string]string{
		"Content-Type":                  "application/vnd.apple.mpegurl",
		"Etag":                          `"v1"`,
		"Cache-Control":                 "max-age=60",
		"Age":                           "5",
		"Content-Length":                "8",
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Expose-Headers": "Cache-Status, Age, Content-Length, Content-Range",
		"Set-Cookie":                    "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	st := h.e.Stats()
	if st.Hits != 1 || st.Misses != 1 || st.OriginFetches != 1 || st.Objects != 1 || st.MemoryObjects != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestCacheKeyIncludesQuery(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, r.URL.RawQuery)
	}, nil)
	for _, q := range []string{"a=1", "a=2", "a=1", ""} {
		_, body := h.get(t, "/thumb.jpg?"+q)
		if body != q {
			t.Fatalf("?%s: body = %q", q, body)
		}
	}
	wantOrigin(t, h.o, 3)
}

func TestConcurrentMissesCollapse(t *testing.T) {
	const n = 100
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		static("segment", "Cache-Control", "max-age=600")(w, r)
	}, nil)

	type answer struct {
		status int
		cs     string
		body   string
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			resp, err := h.srv.Client().Get(h.srv.URL + "/seg/1.m4s")
			if err != nil {
				answers <- answer{cs: err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Cache-Status"), string(b)}
		}()
	}
	h.waitForWaiters(t, "/seg/1.m4s?", n-1)
	close(release)

	collapsed := 0
	for range n {
		a := <-answers
		if a.status != http.StatusOK || a.body != "segment" {
			t.Fatalf("answer = %+v", a)
		}
		if strings.Contains(a.cs, "collapsed") {
			collapsed++
		}
	}
	wantOrigin(t, h.o, 1)
	if collapsed != n-1 {
		t.Errorf("%d responses say collapsed, want %d", collapsed, n-1)
	}
	if st := h.e.Stats(); st.Misses != n {
		t.Errorf("stats = %+v", st)
	}
}

func TestClientLeavingDoesNotBreakFill(t *testing.T) {
	for _, leaver := range []string{"leader", "waiter"} {
		t.Run(leaver, func(t *testing.T) {
			release := make(chan struct{})
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				<-release
				static("segment", "Cache-Control", "max-age=600")(w, r)
			}, nil)

			get := func(ctx context.Context) <-chan error {
				done := make(chan error, 1)
				go func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/seg/2.m4s", nil)
					resp, err := h.srv.Client().Do(req)
					if err == nil {
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if string(b) != "segment" {
							err = errors.New("body " + string(b))
						}
					}
					done <- err
				}()
				return done
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			first, second := context.Background(), context.Background()
			if leaver == "leader" {
				first = ctx
			} else {
				second = ctx
			}
			a := get(first)
			waitFor(t, "the fill", func() bool { return h.o.requests.Load() == 1 })
			b := get(second)
			h.waitForWaiters(t, "/seg/2.m4s?", 1)
			cancel()
			left, stayed := a, b
			if leaver == "waiter" {
				left, stayed = b, a
			}
			if err := <-left; err == nil {
				t.Fatal("cancelled request succeeded")
			}
			close(release)
			if err := <-stayed; err != nil {
				t.Fatal(err)
			}
			resp, _ := h.get(t, "/seg/2.m4s")
			wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=600")
			wantOrigin(t, h.o, 1)
		})
	}
}

func TestRangeFromCache(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	h := newHarness(t, static(body, "Cache-Control", "max-age=60", "ETag", `"r"`), nil)

	// A Range on a miss fills the whole object and answers the range.
	resp, got := h.get(t, "/seg.m4s", "Range", "bytes=10-19")
	wantStatus(t, resp, http.StatusPartialContent)
	if got != "0123456789" || resp.Header.Get("Content-Range") != "bytes 10-19/1000" {
		t.Fatalf("miss range: %q %q", got, resp.Header.Get("Content-Range"))
	}
	if rng := h.o.lastRequest().Header.Get("Range"); rng != "" {
		t.Fatalf("origin saw Range %q", rng)
	}

	tests := []struct {
		name, rng string
		status    int
		check     func(*http.Response, string) bool
	}{
		{"suffix", "bytes=-5", 206, func(r *http.Response, b string) bool {
			return b == "56789" && r.Header.Get("Content-Range") == "bytes 995-999/1000"
		}},
		{"open", "bytes=998-", 206, func(r *http.Response, b string) bool { return b == "89" }},
		{"multi", "bytes=0-1,5-6", 206, func(r *http.Response, b string) bool {
			return strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/byteranges") &&
				strings.Contains(b, "01") && strings.Contains(b, "56")
		}},
		{"unsatisfiable", "bytes=5000-6000", 416, func(r *http.Response, b string) bool {
			return r.Header.Get("Content-Range") == "bytes */1000"
		}},
		{"if-range mismatch", "bytes=0-1", 200, func(r *http.Response, b string) bool { return b == body }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := []string{"Range", tt.rng}
			if tt.name == "if-range mismatch" {
				kv = append(kv, "If-Range", `"other"`)
			}
			resp, got := h.get(t, "/seg.m4s", kv...)
			wantStatus(t, resp, tt.status)
			if !tt.check(resp, got) {
				t.Fatalf("headers %v body %q", resp.Header, got)
			}
			if !strings.Contains(resp.Header.Get("Cache-Status"), "; hit") {
				t.Fatalf("Cache-Status = %q", resp.Header.Get("Cache-Status"))
			}
		})
	}
	wantOrigin(t, h.o, 1)
}

func TestConditionalFromCache(t *testing.T) {
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	h := newHarness(t, static("thumb", "Cache-Control", "max-age=60", "ETag", `"t1"`, "Last-Modified", lm), nil)
	h.get(t, "/t.jpg")

	tests := []struct {
		name   string
		kv     []string
		status int
	}{
		{"etag match", []string{"If-None-Match", `"t1"`}, 304},
		{"etag list", []string{"If-None-Match", `"x", "t1"`}, 304},
		{"etag mismatch", []string{"If-None-Match", `"t0"`}, 200},
		{"ims equal", []string{"If-Modified-Since", lm}, 304},
		{"ims older", []string{"If-Modified-Since", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat)}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.get(t, "/t.jpg", tt.kv...)
			wantStatus(t, resp, tt.status)
			if tt.status == 304 && body != "" {
				t.Fatalf("304 with body %q", body)
			}
			if tt.status == 304 && resp.Header.Get("Etag") != `"t1"` {
				t.Fatalf("304 without ETag: %v", resp.Header)
			}
		})
	}
	wantOrigin(t, h.o, 1)
}

func TestUncacheableNotStored(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
		fwd  string
	}{
		{"no-store", []string{"Cache-Control", "no-store, max-age=60", "ETag", `"a"`}, "uri-miss"},
		{"private", []string{"Cache-Control", "private, max-age=60"}, "uri-miss"},
		{"vary", []string{"Cache-Control", "max-age=60", "Vary", "Accept-Encoding, Cookie"}, "uri-miss"},
		{"vary star", []string{"Cache-Control", "max-age=60", "Vary", "*"}, "uri-miss"},
		{"no freshness or validator", nil, "uri-miss"},
		{"max-age=0 without validator", []string{"Cache-Control", "max-age=0"}, "uri-miss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, static("private data", tt.kv...), nil)
			for range 2 {
				resp, body := h.get(t, "/p")
				wantStatus(t, resp, http.StatusOK)
				wantCacheStatus(t, resp, "blueprint-edge; fwd="+tt.fwd)
				if body != "private data" {
					t.Fatalf("body = %q", body)
				}
			}
			wantOrigin(t, h.o, 2)
			if st := h.e.Stats(); st.Objects != 0 || st.Passes != 2 {
				t.Fatalf("stats = %+v", st)
			}
			if f := h.files(t); len(f) != 0 {
				t.Fatalf("files left: %v", f)
			}
		})
	}
}

func TestVaryAcceptEncodingStored(t *testing.T) {
	h := newHarness(t, static("x", "Cache-Control", "max-age=60", "Vary", "accept-encoding"), nil)
	h.get(t, "/v", "Accept-Encoding", "gzip")
	resp, _ := h.get(t, "/v", "Accept-Encoding", "br")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=60")
	if ae := h.o.lastRequest().Header.Get("Accept-Encoding"); ae != "" {
		t.Fatalf("origin saw Accept-Encoding %q", ae)
	}
}

func TestRevalidation(t *testing.T) {
	t.Run("304", func(t *testing.T) {
		h := newHarness(t, static("v1", "Cache-Control", "max-age=60", "ETag", `"v1"`), nil)
		h.get(t, "/playlist.m3u8")
		h.clk.Advance(61 * time.Second)

		resp, body := h.get(t, "/playlist.m3u8")
		wantStatus(t, resp, http.StatusOK)
		wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=304")
		if body != "v1" {
			t.Fatalf("body = %q", body)
		}
		if inm := h.o.lastRequest().Header.Get("If-None-Match"); inm != `"v1"` {
			t.Fatalf("origin saw If-None-Match %q", inm)
		}
		// Freshness restarted at the 304.
		h.clk.Advance(30 * time.Second)
		resp, _ = h.get(t, "/playlist.m3u8")
		wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=30")
		wantOrigin(t, h.o, 2)
		if st := h.e.Stats(); st.Revalidated != 1 || st.Hits != 1 || st.Misses != 1 {
			t.Fatalf("stats = %+v", st)
		}
	})

	t.Run("304 updates headers", func(t *testing.T) {
		h := newHarness(t, static("v1", "Cache-Control", "max-age=60", "ETag", `"v1"`, "Content-Type", "text/plain"), nil)
		h.get(t, "/p")
		h.clk.Advance(61 * time.Second)
		h.o.set(static("ignored", "Cache-Control", "max-age=600", "ETag", `"v1"`))
		h.get(t, "/p")
		h.clk.Advance(300 * time.Second)
		resp, body := h.get(t, "/p")
		wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=300")
		if body != "v1" || resp.Header.Get("Cache-Control") != "max-age=600" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("body %q header %v", body, resp.Header)
		}
	})

	t.Run("200 replaces", func(t *testing.T) {
		h := newHarness(t, static("old", "Cache-Control", "max-age=60", "ETag", `"v1"`), nil)
		h.get(t, "/playlist.m3u8")
		h.clk.Advance(61 * time.Second)
		h.o.set(static("new", "Cache-Control", "max-age=60", "ETag", `"v2"`))

		resp, body := h.get(t, "/playlist.m3u8")
		wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=200; stored")
		if body != "new" || resp.Header.Get("Etag") != `"v2"` {
			t.Fatalf("body %q etag %q", body, resp.Header.Get("Etag"))
		}
		resp, body = h.get(t, "/playlist.m3u8")
		wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=60")
		if body != "new" {
			t.Fatalf("body = %q", body)
		}
		if f := h.files(t); len(f) != 1 {
			t.Fatalf("files = %v, want the new version only", f)
		}
	})

	t.Run("no-cache revalidates every time", func(t *testing.T) {
		h := newHarness(t, static("nc", "Cache-Control", "no-cache", "ETag", `"n"`), nil)
		resp, _ := h.get(t, "/nc")
		wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; stored")
		for range 2 {
			resp, body := h.get(t, "/nc")
			wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=304")
			if body != "nc" {
				t.Fatalf("body = %q", body)
			}
		}
		wantOrigin(t, h.o, 3)
	})

	t.Run("Last-Modified only", func(t *testing.T) {
		// Heuristic freshness: 10% of 20 days, capped at one day.
		lm := time.Now().Add(-20 * 24 * time.Hour).UTC().Format(http.TimeFormat)
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Last-Modified", lm)
			if r.Header.Get("If-Modified-Since") == lm {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "lm")
		}, nil)
		h.get(t, "/lm")
		h.clk.Advance(23 * time.Hour)
		resp, _ := h.get(t, "/lm")
		wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=3600")
		h.clk.Advance(2 * time.Hour)
		resp, _ = h.get(t, "/lm")
		wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=304")
		if ims := h.o.lastRequest().Header.Get("If-Modified-Since"); ims != lm {
			t.Fatalf("origin saw If-Modified-Since %q", ims)
		}
	})

	t.Run("collapsed", func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, static("v1", "Cache-Control", "max-age=60", "ETag", `"v1"`), nil)
		h.get(t, "/c")
		h.clk.Advance(61 * time.Second)
		h.o.set(func(w http.ResponseWriter, r *http.Request) {
			<-release
			static("v1", "Cache-Control", "max-age=60", "ETag", `"v1"`)(w, r)
		})
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				resp, err := h.srv.Client().Get(h.srv.URL + "/c")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=stale; fwd-status=304") && !strings.Contains(cs, "hit") {
					t.Errorf("Cache-Status = %q", cs)
				}
			})
		}
		h.waitForWaiters(t, "/c?", 9)
		close(release)
		wg.Wait()
		wantOrigin(t, h.o, 2)
	})
}

func TestStaleOnOriginFailure(t *testing.T) {
	tests := []struct {
		name      string
		cc        string
		advance   time.Duration
		fail      func(h *harness)
		status    int
		cacheStat string
	}{
		{"origin down", "max-age=60", time.Minute, func(h *harness) { h.o.Close() },
			200, "blueprint-edge; fwd=stale; detail=origin-error"},
		{"origin 500", "max-age=60", time.Minute, func(h *harness) { h.o.set(failWith(500)) },
			200, "blueprint-edge; fwd=stale; fwd-status=500; detail=origin-error"},
		{"origin 503 large body", "max-age=60", time.Minute, func(h *harness) { h.o.set(failWithBody(503, maxSharedBody+1)) },
			200, "blueprint-edge; fwd=stale; fwd-status=503; detail=origin-error"},
		{"within stale-if-error", "max-age=60, stale-if-error=30", 80 * time.Second, func(h *harness) { h.o.Close() },
			200, "blueprint-edge; fwd=stale; detail=origin-error"},
		{"stale-if-error overrides must-revalidate", "max-age=60, must-revalidate, stale-if-error=30", 80 * time.Second, func(h *harness) { h.o.Close() },
			200, "blueprint-edge; fwd=stale; detail=origin-error"},
		{"past stale-if-error", "max-age=60, stale-if-error=10", 80 * time.Second, func(h *harness) { h.o.Close() },
			502, "blueprint-edge; fwd=stale; detail=origin-error"},
		{"must-revalidate", "max-age=60, must-revalidate", time.Minute, func(h *harness) { h.o.Close() },
			502, "blueprint-edge; fwd=stale; detail=origin-error"},
		{"s-maxage implies proxy-revalidate", "s-maxage=60", time.Minute, func(h *harness) { h.o.set(failWith(500)) },
			500, "blueprint-edge; fwd=stale; fwd-status=500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, static("stale body", "Cache-Control", tt.cc, "ETag", `"s"`), nil)
			h.get(t, "/s")
			h.clk.Advance(tt.advance)
			tt.fail(h)
			resp, body := h.get(t, "/s")
			wantStatus(t, resp, tt.status)
			wantCacheStatus(t, resp, tt.cacheStat)
			if tt.status == 200 && body != "stale body" {
				t.Fatalf("body = %q", body)
			}
			if w := resp.Header.Get("Warning"); w != "" {
				t.Fatalf("Warning = %q", w)
			}
			if tt.status == 200 && h.e.Stats().Stale != 1 {
				t.Fatalf("stats = %+v", h.e.Stats())
			}
		})
	}
}

func failWith(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "origin says "+strconv.Itoa(code), code)
	}
}

func failWithBody(code, size int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, strings.Repeat("e", size))
	}
}

func TestOriginErrorsWithoutStale(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		h.o.Close()
		resp, _ := h.get(t, "/x")
		wantStatus(t, resp, http.StatusBadGateway)
		wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; detail=origin-error")
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatal("502 without CORS")
		}
		if st := h.e.Stats(); st.Errors != 1 || st.Objects != 0 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, func(c *Config) { c.OriginTimeout = 50 * time.Millisecond })
		resp, _ := h.get(t, "/slow")
		wantStatus(t, resp, http.StatusBadGateway)
	})
	for _, code := range []int{404, 410, 500, 503} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			h := newHarness(t, failWith(code), nil)
			for range 2 {
				resp, body := h.get(t, "/missing")
				wantStatus(t, resp, code)
				wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; fwd-status="+strconv.Itoa(code))
				if body != "origin says "+strconv.Itoa(code)+"\n" {
					t.Fatalf("body = %q", body)
				}
			}
			wantOrigin(t, h.o, 2)
		})
	}
	t.Run("404 after stale drops the object", func(t *testing.T) {
		h := newHarness(t, static("gone soon", "Cache-Control", "max-age=1", "ETag", `"g"`), nil)
		h.get(t, "/g")
		h.clk.Advance(2 * time.Second)
		h.o.set(failWith(404))
		resp, _ := h.get(t, "/g")
		wantStatus(t, resp, http.StatusNotFound)
		wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=404")
		if st := h.e.Stats(); st.Objects != 0 {
			t.Fatalf("stats = %+v", st)
		}
	})
}

func TestNegativeCaching(t *testing.T) {
	notFound := func(cc string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", cc)
			http.Error(w, "not found", http.StatusNotFound)
		}
	}
	h := newHarness(t, notFound("public, max-age=60"), nil)
	resp, body := h.get(t, "/videos/1/seg9.m4s")
	wantStatus(t, resp, http.StatusNotFound)
	wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; fwd-status=404; stored")
	if body != "not found\n" {
		t.Fatalf("body = %q", body)
	}
	// Kept for at most 5 s, whatever max-age says; Range does not apply.
	h.clk.Advance(time.Second)
	resp, body = h.get(t, "/videos/1/seg9.m4s", "Range", "bytes=0-1")
	wantStatus(t, resp, http.StatusNotFound)
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=4")
	if body != "not found\n" || resp.Header.Get("Content-Length") != "10" {
		t.Fatalf("body %q header %v", body, resp.Header)
	}
	resp, body = h.do(t, http.MethodHead, "/videos/1/seg9.m4s")
	wantStatus(t, resp, http.StatusNotFound)
	if body != "" {
		t.Fatalf("HEAD body %q", body)
	}
	wantOrigin(t, h.o, 1)

	// Once it expires, the segment that appeared meanwhile replaces it.
	h.clk.Advance(5 * time.Second)
	h.o.set(static("segment", "Cache-Control", "max-age=600"))
	resp, body = h.get(t, "/videos/1/seg9.m4s")
	wantStatus(t, resp, http.StatusOK)
	wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=200; stored")
	if body != "segment" {
		t.Fatalf("body = %q", body)
	}

	// Without explicit freshness, or with no-store, a 404 is not kept.
	for i, cc := range []string{"", "no-store, max-age=60"} {
		h.o.set(notFound(cc))
		for range 2 {
			resp, _ := h.get(t, "/nothing/"+strconv.Itoa(i))
			wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; fwd-status=404")
		}
	}
}

func TestCollapsedErrorShared(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		failWith(404)(w, r)
	}, nil)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			resp, err := h.srv.Client().Get(h.srv.URL + "/nope")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || string(b) != "origin says 404\n" {
				t.Errorf("got %d %q", resp.StatusCode, b)
			}
		})
	}
	h.waitForWaiters(t, "/nope?", 9)
	close(release)
	wg.Wait()
	wantOrigin(t, h.o, 1)
}

func TestCollapsedPassFetchesOnItsOwn(t *testing.T) {
	// Waiters on a fill whose response may not be stored do not get the
	// leader's copy: each fetches its own, like any pass-through.
	const n = 5
	var calls atomic.Int64
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-release
		}
		static("mine", "Cache-Control", "private, max-age=60")(w, r)
	}, nil)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := h.srv.Client().Get(h.srv.URL + "/me")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "mine" || resp.Header.Get("Cache-Status") != "blueprint-edge; fwd=uri-miss" {
				t.Errorf("got %q, Cache-Status %q", b, resp.Header.Get("Cache-Status"))
			}
		})
	}
	h.waitForWaiters(t, "/me?", n-1)
	close(release)
	wg.Wait()
	wantOrigin(t, h.o, n)
	if st := h.e.Stats(); st.Passes != n || st.Objects != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestReplacementNotStorableDropsOldVersion(t *testing.T) {
	h := newHarness(t, static("v1", "Cache-Control", "max-age=60", "ETag", `"v1"`), nil)
	h.get(t, "/x")
	h.clk.Advance(time.Minute)
	h.o.set(static("v2", "Cache-Control", "no-store"))
	resp, body := h.get(t, "/x")
	wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=200")
	if body != "v2" {
		t.Fatalf("body = %q", body)
	}
	if st := h.e.Stats(); st.Objects != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if f := h.files(t); len(f) != 0 {
		t.Fatalf("files = %v", f)
	}
}

func TestMemoryEvictionByBytes(t *testing.T) {
	obj := strings.Repeat("m", 4000)
	h := newHarness(t, static(obj, "Cache-Control", "max-age=600"), func(c *Config) {
		c.MemoryBytes = 10_000
		c.MemoryObjectBytes = 5_000
	})
	for _, p := range []string{"/a", "/b", "/c"} {
		h.get(t, p)
	}
	st := h.e.Stats()
	if st.MemoryBytes != 8000 || st.MemoryObjects != 2 || st.Objects != 3 {
		t.Fatalf("after 3 fills: %+v", st)
	}
	// /a left memory but not disk: a hit that does not reach the origin,
	// and that promotes /a back to memory, evicting /b.
	resp, body := h.get(t, "/a")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=600")
	if body != obj {
		t.Fatal("wrong body from disk")
	}
	wantOrigin(t, h.o, 3)
	if st := h.e.Stats(); st.MemoryObjects != 2 || st.MemoryBytes != 8000 {
		t.Fatalf("after promotion: %+v", st)
	}
	h.e.store.mu.Lock()
	inMem := map[string]bool{}
	for k, e := range h.e.store.entries {
		inMem[k] = e.inMem
	}
	h.e.store.mu.Unlock()
	if !inMem["/a?"] || inMem["/b?"] || !inMem["/c?"] {
		t.Fatalf("memory tier = %v, want /a and /c", inMem)
	}
	if got := counterValue(t, h.reg, "blueprint_edge_evictions_total", "tier", "memory"); got != 2 {
		t.Fatalf("memory evictions = %v", got)
	}
}

func TestLargeObjectsLiveOnDiskOnly(t *testing.T) {
	big := strings.Repeat("b", 10_000)
	h := newHarness(t, static(big, "Cache-Control", "max-age=600"), func(c *Config) {
		c.MemoryObjectBytes = 1000
	})
	h.get(t, "/big")
	resp, body := h.get(t, "/big")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=600")
	if body != big {
		t.Fatal("wrong body")
	}
	if st := h.e.Stats(); st.MemoryObjects != 0 || st.Objects != 1 || st.DiskBytes != 12288 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestDiskEvictionDeletesFiles(t *testing.T) {
	obj := strings.Repeat("d", 4096)
	h := newHarness(t, static(obj, "Cache-Control", "max-age=600"), func(c *Config) {
		c.DiskBytes = 3 * 4096
		c.MaxObjectBytes = 4096
	})
	for _, p := range []string{"/1", "/2", "/3"} {
		h.get(t, p)
	}
	h.get(t, "/1") // /2 is now least recently used
	h.get(t, "/4")
	if f := h.files(t); len(f) != 3 {
		t.Fatalf("files = %v", f)
	}
	if st := h.e.Stats(); st.Objects != 3 || st.DiskBytes != 3*4096 || st.MemoryObjects != 3 {
		t.Fatalf("stats = %+v", st)
	}
	resp, _ := h.get(t, "/1")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=600")
	resp, _ = h.get(t, "/2")
	wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; stored")
	wantOrigin(t, h.o, 5)
}

func TestOversizedObjectStreamsThrough(t *testing.T) {
	big := strings.Repeat("x", 5000)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				if chunked {
					io.WriteString(w, big[:100])
					w.(http.Flusher).Flush()
					io.WriteString(w, big[100:])
					return
				}
				w.Header().Set("Content-Length", "5000")
				io.WriteString(w, big)
			}, func(c *Config) { c.MaxObjectBytes = 1000 })
			for range 2 {
				resp, body := h.get(t, "/huge.mp4", "Range", "bytes=0-9")
				wantStatus(t, resp, http.StatusOK)
				wantCacheStatus(t, resp, "blueprint-edge; fwd=miss")
				if body != big {
					t.Fatalf("body length %d", len(body))
				}
			}
			wantOrigin(t, h.o, 2)
			if f := h.files(t); len(f) != 0 {
				t.Fatalf("files left: %v", f)
			}
		})
	}
}

func TestHead(t *testing.T) {
	h := newHarness(t, static("0123456789", "Cache-Control", "max-age=60", "Content-Type", "video/mp4"), nil)
	resp, body := h.do(t, http.MethodHead, "/h.mp4")
	wantStatus(t, resp, http.StatusOK)
	wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; stored")
	if body != "" || resp.Header.Get("Content-Length") != "10" || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("HEAD: body %q header %v", body, resp.Header)
	}
	if m := h.o.lastRequest().Method; m != http.MethodGet {
		t.Fatalf("origin saw %s", m)
	}
	resp, body = h.get(t, "/h.mp4")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=60")
	if body != "0123456789" {
		t.Fatalf("body = %q", body)
	}
	resp, body = h.do(t, http.MethodHead, "/h.mp4")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=60")
	if body != "" {
		t.Fatalf("body = %q", body)
	}
	wantOrigin(t, h.o, 1)

	// HEAD of something that is not stored.
	h.o.set(static("abc", "Cache-Control", "no-store"))
	resp, body = h.do(t, http.MethodHead, "/ns")
	wantCacheStatus(t, resp, "blueprint-edge; fwd=uri-miss")
	if body != "" || resp.Header.Get("Content-Length") != "3" {
		t.Fatalf("HEAD pass: body %q header %v", body, resp.Header)
	}
}

func TestMethods(t *testing.T) {
	h := newHarness(t, static("x", "Cache-Control", "max-age=60"), nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		resp, _ := h.do(t, m, "/x")
		wantStatus(t, resp, http.StatusMethodNotAllowed)
		if a := resp.Header.Get("Allow"); a != "GET, HEAD, OPTIONS" {
			t.Fatalf("%s: Allow = %q", m, a)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Cache-Status") == "" {
			t.Fatalf("%s: header %v", m, resp.Header)
		}
	}
	resp, _ := h.do(t, http.MethodOptions, "/x", "Origin", "http://player.example", "Access-Control-Request-Method", "GET")
	wantStatus(t, resp, http.StatusNoContent)
	if resp.Header.Get("Access-Control-Allow-Methods") == "" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight header %v", resp.Header)
	}
	wantOrigin(t, h.o, 0)
}

func TestAllowOriginAndName(t *testing.T) {
	h := newHarness(t, static("x", "Cache-Control", "max-age=60"), func(c *Config) {
		c.AllowOrigin = "http://localhost:8080"
		c.Name = "edge 1"
	})
	resp, _ := h.get(t, "/x")
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:8080" {
		t.Fatalf("header %v", resp.Header)
	}
	wantCacheStatus(t, resp, `"edge 1"; fwd=miss; stored`)
}

func TestUpstreamCacheStatusKept(t *testing.T) {
	h := newHarness(t, static("x", "Cache-Control", "max-age=60", "Cache-Status", "shield; hit"), nil)
	resp, _ := h.get(t, "/x")
	wantCacheStatus(t, resp, "shield; hit, blueprint-edge; fwd=miss; stored")
	resp, _ = h.get(t, "/x")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=60")
}

func TestAgeFromOrigin(t *testing.T) {
	h := newHarness(t, static("x", "Cache-Control", "max-age=60", "Age", "50"), nil)
	resp, _ := h.get(t, "/x")
	if resp.Header.Get("Age") != "50" {
		t.Fatalf("Age = %q", resp.Header.Get("Age"))
	}
	h.clk.Advance(5 * time.Second)
	resp, _ = h.get(t, "/x")
	wantCacheStatus(t, resp, "blueprint-edge; hit; ttl=5")
	h.clk.Advance(5 * time.Second)
	resp, _ = h.get(t, "/x")
	wantCacheStatus(t, resp, "blueprint-edge; fwd=stale; fwd-status=200; stored")
}

func TestVanishedFileRefetched(t *testing.T) {
	h := newHarness(t, static(strings.Repeat("v", 2000), "Cache-Control", "max-age=60"), func(c *Config) {
		c.MemoryObjectBytes = 1000
	})
	h.get(t, "/v")
	for _, f := range h.files(t) {
		os.Remove(f)
	}
	resp, body := h.get(t, "/v")
	wantStatus(t, resp, http.StatusOK)
	wantCacheStatus(t, resp, "blueprint-edge; fwd=miss; stored")
	if len(body) != 2000 {
		t.Fatalf("body length %d", len(body))
	}
}

func TestStopWaitsForFills(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		static("late", "Cache-Control", "max-age=60")(w, r)
	}, nil)
	got := make(chan int, 1)
	go func() {
		resp, err := h.srv.Client().Get(h.srv.URL + "/late")
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	waitFor(t, "the fill", func() bool { return h.o.requests.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.e.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a fill in flight = %v", err)
	}
	// Stop gave up and cancelled the fill: the client gets 502.
	if code := <-got; code != http.StatusBadGateway {
		t.Fatalf("status = %d", code)
	}
	close(release)
}

func TestStopReturnsAfterFill(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		static("late", "Cache-Control", "max-age=60")(w, r)
	}, nil)
	go func() {
		if resp, err := h.srv.Client().Get(h.srv.URL + "/late"); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the fill", func() bool { return h.o.requests.Load() == 1 })
	stopped := make(chan error, 1)
	go func() { stopped <- h.e.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v with a fill in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if st := h.e.Stats(); st.Objects != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestStartCleansCacheDir(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"edge-1.obj", "edge-2.tmp", "keep.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(Config{Origin: "http://127.0.0.1:1", CacheDir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 1 || des[0].Name() != "keep.txt" {
		t.Fatalf("dir = %v", des)
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	ok := Config{Origin: "http://127.0.0.1:9000", CacheDir: dir}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // in the error; "" = valid
	}{
		{"ok", func(*Config) {}, ""},
		{"origin with path", func(c *Config) { c.Origin = "https://cdn.example/bucket/" }, ""},
		{"no origin", func(c *Config) { c.Origin = "" }, "edge.origin"},
		{"ftp origin", func(c *Config) { c.Origin = "ftp://x" }, "edge.origin"},
		{"origin with query", func(c *Config) { c.Origin = "http://x/?a=b" }, "edge.origin"},
		{"no cache dir", func(c *Config) { c.CacheDir = "" }, "edge.cache_dir"},
		{"negative memory", func(c *Config) { c.MemoryBytes = -1 }, "edge.memory_bytes"},
		{"negative timeout", func(c *Config) { c.OriginTimeout = -time.Second }, "edge.origin_timeout"},
		{"object over disk", func(c *Config) { c.DiskBytes = 100; c.MaxObjectBytes = 200 }, "edge.max_object_bytes"},
		{"memory object over memory", func(c *Config) { c.MemoryBytes = 100; c.MemoryObjectBytes = 200 }, "edge.memory_object_bytes"},
		{"small disk shrinks default", func(c *Config) { c.DiskBytes = 1 << 20 }, ""},
		{"bad name", func(c *Config) { c.Name = "é" }, "edge.name"},
		{"bad allow origin", func(c *Config) { c.AllowOrigin = "x\r\ny" }, "edge.allow_origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			e, err := New(cfg, nil, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if e.cfg.MaxObjectBytes > e.cfg.DiskBytes || e.cfg.MemoryObjectBytes > e.cfg.MemoryBytes {
					t.Fatalf("config %+v", e.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "edge: ") {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestOriginPathPrefix(t *testing.T) {
	clk := &clock{t: time.Now()}
	o := newOrigin(t, clk, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.RequestURI())
	})
	e, err := New(Config{Origin: o.URL + "/bucket/", CacheDir: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v/a%20b.m4s?x=1", nil))
	if got := rec.Body.String(); got != "/bucket/v/a%20b.m4s?x=1" {
		t.Fatalf("origin saw %q", got)
	}
}
