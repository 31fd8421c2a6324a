package search

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/blueprint-media/blueprint/internal/web"
)

func newModuleServer(t *testing.T, idx Index) *httptest.Server {
	t.Helper()
	pages, err := web.NewPages()
	if err != nil {
		t.Fatal(err)
	}
	m := NewModule(idx, pages, ModuleConfig{ThumbURL: func(k string) string { return "http://edge.test/media/" + k }},
		slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	mux := http.NewServeMux()
	m.Routes(mux, "frontend-test")
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func getJSON(t *testing.T, u string, out any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: content type %q", u, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

func TestAPI(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBleve(BleveConfig{Path: filepath.Join(t.TempDir(), "search")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	docs := []Doc{{Type: Creator, ID: 1, Title: "ansel", Creator: "ansel", CreatorID: 1, CreatedAt: time.Now()}}
	for i := range 30 {
		docs = append(docs, Doc{Type: Video, ID: int64(100 + i), Title: "Yosemite valley <b>in</b> winter", Description: "Half Dome #landscape",
			Tags: []string{"landscape"}, Creator: "ansel", CreatorID: 1, Thumbnail: "t/1.jpg", CreatedAt: time.Now(), Popularity: int64(i)})
	}
	if err := b.Upsert(ctx, docs...); err != nil {
		t.Fatal(err)
	}
	srv := newModuleServer(t, b)

	var res APIResult
	if code := getJSON(t, srv.URL+"/api/v1/search?q=yosemitte", &res); code != 200 {
		t.Fatalf("status %d", code)
	}
	if res.Total != 30 || len(res.Hits) != DefaultPageSize || !res.More || res.Type != "videos" {
		t.Fatalf("result: total %d, %d hits, more %v, type %q", res.Total, len(res.Hits), res.More, res.Type)
	}
	h := res.Hits[0]
	if h.ID != "129" || h.URL != "/watch/129" || h.ThumbnailURL != "http://edge.test/media/t/1.jpg" || h.Creator != "ansel" || h.CreatorID != "1" {
		t.Fatalf("first hit (most liked): %+v", h)
	}
	if code := getJSON(t, srv.URL+"/api/v1/search?q=yosemite&page=2", &res); code != 200 || len(res.Hits) != 10 || res.More {
		t.Fatalf("page 2: %d, %d hits, more %v", code, len(res.Hits), res.More)
	}
	if code := getJSON(t, srv.URL+"/api/v1/search?q=ans&type=creators", &res); code != 200 || len(res.Hits) != 1 ||
		res.Hits[0].URL != "/search?type=videos&q=ansel" {
		t.Fatalf("creators: %d %+v", code, res)
	}

	for _, raw := range []string{"", "q=", "q=a&q=b", "q=x&type=channels", "q=x&page=abc", "q=x&size=51", "q=x&page=0",
		"q=" + url.QueryEscape(strings.Repeat("y", 201)), "q=a+b+c+d+e+f+g+h+i+j+k", "q=%FF", "q=x&page=1000"} {
		var e struct{ Error string }
		if code := getJSON(t, srv.URL+"/api/v1/search?"+raw, &e); code != 400 || e.Error == "" {
			t.Errorf("?%s: status %d, error %q; want 400 with a reason", raw, code, e.Error)
		}
	}

	// The page: server-rendered results, escaped.
	resp, err := http.Get(srv.URL + "/search?q=yosemite")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Yosemite valley &lt;b&gt;in&lt;/b&gt; winter") ||
		!strings.Contains(string(body), "/static/search.js") || !strings.Contains(string(body), "Next →") {
		t.Fatalf("page: %d\n%s", resp.StatusCode, body)
	}
	for u, want := range map[string]int{"/search": 200, "/search?q=%21%21": 400, "/search?q=x&type=creators": 200} {
		resp, err := http.Get(srv.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", u, resp.StatusCode, want)
		}
	}
}

type brokenIndex struct{ Index }

func (brokenIndex) Search(context.Context, Query) (Result, error) {
	return Result{}, errors.New("search: connection refused")
}
func (brokenIndex) Driver() string { return "broken" }

// TestAPIBackendDown: a failing index is a 503 with a reason, not a 500.
func TestAPIBackendDown(t *testing.T) {
	srv := newModuleServer(t, brokenIndex{})
	var e struct{ Error string }
	if code := getJSON(t, srv.URL+"/api/v1/search?q=anything", &e); code != 503 || !strings.Contains(e.Error, "unavailable") {
		t.Fatalf("status %d, error %q", code, e.Error)
	}
}

// TestMetricsLint: every metric of the package, with a sample, passes
// promlint.
func TestMetricsLint(t *testing.T) {
	b, err := OpenBleve(BleveConfig{Path: filepath.Join(t.TempDir(), "search")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ix := NewIndexer(b, nil, nil, logger, reg)
	ix.applied.WithLabelValues("video.ready").Inc()
	ix.lag.Observe(0.2)
	m := NewModule(b, nil, ModuleConfig{}, logger, reg)
	if _, err := m.run(context.Background(), Query{Text: "anything"}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 6 {
		t.Errorf("%d metric families, want 6", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
