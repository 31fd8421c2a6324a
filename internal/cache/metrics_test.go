package cache

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// gathered returns the value of every series as "family{cache}" → value.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
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
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "cache" {
					name = l.GetValue()
				}
			}
			v := m.GetCounter().GetValue()
			if m.GetGauge() != nil {
				v = m.GetGauge().GetValue()
			}
			out[mf.GetName()+"{"+name+"}"] = v
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	videos := mustNew(t, Config[string, int]{MaxEntries: 1, Policy: PolicyLRU})
	users := mustNew(t, Config[string, int]{MaxBytes: 1 << 20})
	reg := prometheus.NewPedanticRegistry()
	if err := videos.Register(reg, "videos"); err != nil {
		t.Fatal(err)
	}
	if err := users.Register(reg, "users"); err != nil {
		t.Fatal(err)
	}
	if err := users.Register(reg, "users"); err == nil || !strings.HasPrefix(err.Error(), "cache: ") {
		t.Fatalf("registering a name twice: %v", err)
	}
	videos.Set("a", 1, 0)
	videos.Get("a")
	videos.Get("b")
	videos.Set("b", 2, 0) // evicts a
	videos.Delete("b")
	users.Set("u", 1, 300)

	got := gathered(t, reg)
	for series, want := range map[string]float64{
		"blueprint_cache_hits_total{videos}":        1,
		"blueprint_cache_misses_total{videos}":      1,
		"blueprint_cache_sets_total{videos}":        2,
		"blueprint_cache_deletes_total{videos}":     1,
		"blueprint_cache_evictions_total{videos}":   1,
		"blueprint_cache_rejections_total{videos}":  0,
		"blueprint_cache_expirations_total{videos}": 0,
		"blueprint_cache_entries{videos}":           0,
		"blueprint_cache_max_entries{videos}":       1,
		"blueprint_cache_max_bytes{videos}":         0,
		"blueprint_cache_entries{users}":            1,
		"blueprint_cache_bytes{users}":              300,
		"blueprint_cache_max_bytes{users}":          1 << 20,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if len(got) != 22 {
		t.Errorf("%d series, want 11 per cache", len(got))
	}
}
