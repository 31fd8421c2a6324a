package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/telemetry"
)

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.AdminAddr, cfg.Edge.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	return cfg
}

func start(t *testing.T, cfg config.Config) *App {
	t.Helper()
	a := New(cfg, telemetry.NewLogger(io.Discard, "info", "json"))
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Stop(ctx)
	})
	return a
}

// TestAllRolesAdminEndpoints starts every role and checks the admin
// listener: health, readiness, status, and metrics that pass promlint.
func TestAllRolesAdminEndpoints(t *testing.T) {
	a := start(t, testConfig(t))
	admin := a.URLs().Admin
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/": 200, "/debug/pprof/": 200, "/metrics": 200} {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, err := http.Get(admin + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if !st.Ready || len(st.Backends) != 2 || st.Edge == nil || st.QueueDepth == nil {
		t.Fatalf("status: %+v", st)
	}
	for _, b := range st.Backends {
		if !b.Healthy {
			t.Errorf("backend %s down: %s", b.URL, b.LastError)
		}
	}
	// The public listener is not the admin one.
	resp, err = http.Get(a.URLs().Gateway + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("metrics served on the public listener")
	}

	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"blueprint_gateway_rate_limited_total", "blueprint_lb_backend_up", "blueprint_edge_cache_bytes", "blueprint_queue_depth", "go_sql_in_use_connections"} {
		if !names[want] {
			t.Errorf("metric %s missing", want)
		}
	}
}

// TestRoleSubsets: each role set starts with what it needs, or says what
// is missing.
func TestRoleSubsets(t *testing.T) {
	cfg := testConfig(t)
	cfg.Roles = []string{"edge"}
	a := New(cfg, telemetry.NewLogger(io.Discard, "info", "json"))
	err := a.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "edge.origin") {
		t.Fatalf("edge without origin: %v", err)
	}
	cfg.Roles = []string{"gateway"}
	a = New(cfg, telemetry.NewLogger(io.Discard, "info", "json"))
	err = a.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "lb.backends") {
		t.Fatalf("gateway without frontends: %v", err)
	}

	// An origin alone, then an edge process pointed at it.
	cfg = testConfig(t)
	cfg.Roles = []string{"origin"}
	o := start(t, cfg)
	cfg2 := testConfig(t)
	cfg2.Roles = []string{"edge"}
	cfg2.Edge.Origin = o.URLs().Origin
	e := start(t, cfg2)
	resp, err := http.Get(e.URLs().Edge + "/media/videos/1/hls/master.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(resp.Header.Get("Cache-Status"), "blueprint-edge") {
		t.Fatalf("edge → origin miss: %d %q", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
}

// TestUploadBackpressure: with more transcoding jobs waiting than
// dispatch.max_job_backlog, a new upload gets 429 with Retry-After, and the
// dispatcher's admin page answers.
func TestUploadBackpressure(t *testing.T) {
	cfg := testConfig(t)
	cfg.Roles = []string{"gateway", "frontend", "broker", "edge", "origin"} // no worker: jobs wait
	cfg.Dispatch.MaxJobBacklog = 2
	a := start(t, cfg)
	for i := range 3 {
		if err := a.q.Publish(context.Background(), "transcode", "backlog-"+string(rune('a'+i)), map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest("POST", a.URLs().Gateway+"/api/v1/uploads/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "busy transcoding") {
		t.Fatalf("upload with a full backlog: %s %q, Retry-After %q", resp.Status, body, resp.Header.Get("Retry-After"))
	}
	resp, err = http.Get(a.URLs().Admin + "/dispatch.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/dispatch.json: %s", resp.Status)
	}
}

// TestPlatformCaches: sessions are served from the cache, a logout takes
// effect at once, and the status page shows the caches' hit ratios.
func TestPlatformCaches(t *testing.T) {
	a := start(t, testConfig(t))
	gw := a.URLs().Gateway
	do := apiCaller(t, gw)
	if code, _ := do("POST", "/api/v1/users", "", `{"username":"cachey","email":"c@example.com","password":"correct horse"}`); code != 201 {
		t.Fatalf("sign up: %d", code)
	}
	code, out := do("POST", "/api/v1/sessions", "", `{"username":"cachey","password":"correct horse"}`)
	token, _ := out["token"].(string)
	if code != 200 || token == "" {
		t.Fatalf("login: %d %v", code, out)
	}
	for range 5 {
		if code, _ := do("GET", "/api/v1/me", token, ""); code != 200 {
			t.Fatalf("me: %d", code)
		}
	}
	for range 3 { // unknown tokens: one database read, then the negative cache
		if code, _ := do("GET", "/api/v1/me", "bp_guessed0000000000000000000000", ""); code != 401 {
			t.Fatalf("guessed token: %d", code)
		}
	}
	if code, _ := do("DELETE", "/api/v1/sessions", token, ""); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := do("GET", "/api/v1/me", token, ""); code != 401 {
		t.Fatalf("the token still works right after logout: %d", code)
	}
	st := a.Status(context.Background())
	byName := map[string]CacheStatus{}
	for _, c := range st.Caches {
		byName[c.Name] = c
	}
	sessions, ok := byName["sessions"]
	if !ok || byName["videos"].Name == "" || byName["profiles"].Name == "" {
		t.Fatalf("caches on the status page: %+v", st.Caches)
	}
	// 5 + 1 authenticated reads, 3 guessed: 3 loads (token, guessed, token after logout).
	if sessions.Loads != 3 || sessions.Hits < 6 {
		t.Errorf("session cache: %+v, want 3 loads and at least 6 hits", sessions)
	}
	resp, err := http.Get(a.URLs().Admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "sessions") || !strings.Contains(string(page), "hit ratio") {
		t.Errorf("status page lacks the caches")
	}
}

// apiCaller returns a function that sends a JSON API request to the
// gateway at gw (with a bearer token when one is given) and returns the
// status code and the decoded JSON object of the answer.
func apiCaller(t *testing.T, gw string) func(method, path, token, body string) (int, map[string]any) {
	return func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, gw+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
}
