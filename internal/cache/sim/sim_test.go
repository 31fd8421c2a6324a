package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/cache"
	"github.com/blueprint-media/blueprint/internal/cache/trace"
)

// tracesDir returns ../shared/traces beside the repository root (the
// directory holding go.mod). The traces are part of the project's shared
// data: a missing directory fails the test, it is never skipped.
func tracesDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	traces := filepath.Join(dir, "..", "shared", "traces")
	if _, err := os.Stat(traces); err != nil {
		t.Fatalf("trace directory %s is missing (the shared traces must sit beside the repository): %v", traces, err)
	}
	return traces
}

func load(t *testing.T, name string, limit int) []uint64 {
	t.Helper()
	keys, err := trace.Load(filepath.Join(tracesDir(t), name), "", limit)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestLRUReproducesTheReferenceHitRatios checks the readers and the
// simulator against the LRU figures of traces/README.md, exactly (hit
// counts where the README gives them).
func TestLRUReproducesTheReferenceHitRatios(t *testing.T) {
	for _, tc := range []struct {
		file     string
		requests int
		unique   int
		size     int
		hits     uint64
		percent  string
	}{
		{"gli.gz", 6015, 2529, 1000, 674, "11.21"},
		{"gli.gz", 6015, 2529, 2000, 3453, "57.41"},
		{"loop.gz", 505_500, 1011, 1000, 0, "0.00"},
		{"loop.gz", 505_500, 1011, 2000, 504_489, "99.80"},
		{"trace_vaultservice.gz", 135_702, 90_468, 32, 0, "19.62"},
		{"trace_vaultservice.gz", 135_702, 90_468, 64, 45_228, "33.33"},
		{"trace_vaultservice.gz", 135_702, 90_468, 1000, 45_234, "33.33"},
		{"oltp.gz", 914_145, 186_880, 1000, 300_122, "32.83"},
		{"oltp.gz", 914_145, 186_880, 2000, 388_235, "42.47"},
	} {
		keys := load(t, tc.file, 0)
		unique := map[uint64]bool{}
		for _, k := range keys {
			unique[k] = true
		}
		if len(keys) != tc.requests || len(unique) != tc.unique {
			t.Fatalf("%s: %d requests, %d unique keys; want %d and %d", tc.file, len(keys), len(unique), tc.requests, tc.unique)
		}
		r, err := Run(keys, cache.PolicyLRU, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if tc.hits != 0 || tc.percent == "0.00" {
			if r.Hits != tc.hits {
				t.Errorf("%s @%d: LRU %d hits, want %d", tc.file, tc.size, r.Hits, tc.hits)
			}
		}
		if got := formatPercent(r.HitRatio()); got != tc.percent {
			t.Errorf("%s @%d: LRU %s %%, want %s %%", tc.file, tc.size, got, tc.percent)
		}
	}
}

func formatPercent(r float64) string { return strconv.FormatFloat(100*r, 'f', 2, 64) }

// TestP3PrefixIsReadable reads the start of the largest trace, whose full
// replays belong to bench/cache.
func TestP3PrefixIsReadable(t *testing.T) {
	keys := load(t, "p3.gz", 200_000)
	if len(keys) != 200_000 {
		t.Fatalf("%d keys", len(keys))
	}
}

// TestTinyLFUBeatsLRU is a regression guard on the default policy's
// quality (not its speed): on the scan-, frequency- and recency-heavy
// traces it must stay well above plain LRU or match it.
func TestTinyLFUBeatsLRU(t *testing.T) {
	for _, tc := range []struct {
		file string
		size int
		min  float64 // hit ratio, %
	}{
		{"gli.gz", 1000, 45},                // LRU 11.21, otter ≈ 41
		{"loop.gz", 1000, 95},               // LRU 0
		{"trace_vaultservice.gz", 1000, 30}, // LRU 33.33 (the maximum), otter ≈ 29
	} {
		r, err := Run(load(t, tc.file, 0), cache.PolicyTinyLFU, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if 100*r.HitRatio() < tc.min {
			t.Errorf("%s @%d: tinylfu %.2f %%, want ≥ %.0f %%", tc.file, tc.size, 100*r.HitRatio(), tc.min)
		}
	}
}

func TestSimulateIsDeterministic(t *testing.T) {
	keys := load(t, "gli.gz", 0)
	for _, name := range cache.PolicyNames() {
		a, _ := Run(keys, name, 500)
		b, _ := Run(keys, name, 500)
		if a != b {
			t.Errorf("%s: %+v then %+v", name, a, b)
		}
	}
}

func TestMainCommand(t *testing.T) {
	gli := filepath.Join(tracesDir(t), "gli.gz")
	var out, errs bytes.Buffer
	if code := Main([]string{"--trace", gli, "--policy", "lru,tinylfu", "--size", "1000,2000"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, want := range []string{"lru  1000      6015   674    11.21 %", "lru  2000      6015  3453    57.41 %", "tinylfu"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := Main([]string{"--trace", gli, "--format", "lirs", "--policy", "all", "--limit", "100"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 1+len(cache.PolicyNames()) {
		t.Errorf("%d lines for all policies:\n%s", n, out.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "--trace is required"},
		{[]string{"--trace", gli, "--policy", "mru"}, 2, `unknown policy "mru"`},
		{[]string{"--trace", gli, "--size", "0"}, 2, "not a positive entry count"},
		{[]string{"--trace", gli, "--format", "csv"}, 2, "unknown format"},
		{[]string{"--trace", gli, "extra"}, 2, "unexpected argument"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--trace", gli + ".missing"}, 1, "no such file"},
		{[]string{"--trace", gli, "--format", "corda"}, 1, "truncated key"},
	} {
		errs.Reset()
		if code := Main(tc.args, &out, &errs); code != tc.code || !strings.Contains(errs.String(), tc.want) {
			t.Errorf("Main(%q) = %d, stderr %q; want %d and %q", tc.args, code, errs.String(), tc.code, tc.want)
		}
	}
	errs.Reset()
	if code := Main([]string{"-h"}, &out, &errs); code != 0 || !strings.Contains(errs.String(), "usage: blueprint cache sim") {
		t.Errorf("-h: %d %q", code, errs.String())
	}
}
