package edge

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// counterValue returns the value of the series of family name whose label
// equals value, or -1 if there is none.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, static("0123456789", "Cache-Control", "max-age=60"), nil)
	h.get(t, "/a")
	h.get(t, "/a")
	h.get(t, "/a", "Range", "bytes=0-3")

	mfs, err := h.reg.Gather()
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
	for _, n := range []string{
		"blueprint_edge_requests_total", "blueprint_edge_origin_fetches_total",
		"blueprint_edge_origin_fetch_seconds", "blueprint_edge_served_bytes_total",
		"blueprint_edge_cache_bytes", "blueprint_edge_cache_objects", "blueprint_edge_evictions_total",
	} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	for label, want := range map[string]float64{"hit": 2, "miss": 1, "stale": 0, "error": 0} {
		if got := counterValue(t, h.reg, "blueprint_edge_requests_total", "result", label); got != want {
			t.Errorf("requests_total{result=%q} = %v, want %v", label, got, want)
		}
	}
	if got := counterValue(t, h.reg, "blueprint_edge_origin_fetches_total", "status", "2xx"); got != 1 {
		t.Errorf("origin_fetches_total{status=2xx} = %v", got)
	}
	if got := counterValue(t, h.reg, "blueprint_edge_cache_bytes", "tier", "memory"); got != 10 {
		t.Errorf("cache_bytes{tier=memory} = %v", got)
	}
	var served float64
	for _, mf := range mfs {
		if mf.GetName() == "blueprint_edge_served_bytes_total" {
			served = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if served != 24 {
		t.Errorf("served_bytes_total = %v, want 24", served)
	}
}

func TestRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Config{Origin: "http://127.0.0.1:1", CacheDir: t.TempDir()}
	if _, err := New(cfg, nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil, reg); err == nil || !strings.Contains(err.Error(), "edge: register metrics") {
		t.Fatalf("second New on one registry: %v", err)
	}
	// Edges that each carry a distinguishing label share a registry.
	shared := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"edge": name}, shared)
		if _, err := New(cfg, nil, wrapped); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 304: "3xx", 404: "4xx", 503: "5xx", 99: "other", 600: "other"} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%d) = %q", code, got)
		}
	}
}
