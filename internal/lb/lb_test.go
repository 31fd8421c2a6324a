package lb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestNewValidates(t *testing.T) {
	ok := []string{"http://127.0.0.1:1"}
	tests := []struct {
		name     string
		cfg      Config
		backends []string
		want     string // substring of the error
	}{
		{"unknown strategy", Config{Strategy: "random"}, ok, `unknown strategy "random"`},
		{"no backends", Config{}, nil, "no backends"},
		{"unparsable url", Config{}, []string{"http://[::1"}, `backend "http://[::1"`},
		{"no scheme", Config{}, []string{"127.0.0.1:80"}, "127.0.0.1:80"},
		{"wrong scheme", Config{}, []string{"ftp://host"}, "scheme"},
		{"no host", Config{}, []string{"http://"}, "missing host"},
		{"query", Config{}, []string{"http://host/?a=b"}, "query"},
		{"duplicate", Config{}, []string{"http://h:1", "http://h:1/"}, "twice"},
		{"health path", Config{HealthPath: "healthz"}, ok, "health path"},
		{"negative interval", Config{HealthInterval: -1}, ok, "health interval"},
		{"negative timeout", Config{HealthTimeout: -1}, ok, "health timeout"},
		{"negative unhealthy after", Config{UnhealthyAfter: -1}, ok, "unhealthy after"},
		{"negative healthy after", Config{HealthyAfter: -1}, ok, "healthy after"},
		{"negative virtual nodes", Config{VirtualNodes: -1}, ok, "virtual nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.cfg, tt.backends, nil, nil)
			if err == nil {
				t.Fatalf("New: want error containing %q, got a Balancer with %d backends", tt.want, len(b.backends))
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "lb: ") {
				t.Fatalf("New: error %q, want the lb: prefix and %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	b, err := New(Config{}, []string{"http://127.0.0.1:1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Strategy:       RoundRobin,
		HealthPath:     "/healthz",
		HealthInterval: time.Second,
		HealthTimeout:  time.Second,
		UnhealthyAfter: 2,
		HealthyAfter:   1,
		VirtualNodes:   100,
	}
	if b.cfg != want {
		t.Fatalf("defaults = %+v, want %+v", b.cfg, want)
	}
	// Before any health check, backends are assumed up.
	if st := b.Backends(); len(st) != 1 || !st[0].Healthy || st[0].Name != "127.0.0.1:1" {
		t.Fatalf("Backends() = %+v", st)
	}
}

func TestPickExclude(t *testing.T) {
	for _, strategy := range []string{RoundRobin, LeastConn, ConsistentHash} {
		t.Run(strategy, func(t *testing.T) {
			tbs := newBackends(t, 3)
			b, reg := newBalancer(t, Config{Strategy: strategy}, tbs)
			first, done, err := b.Pick("user-1")
			if err != nil {
				t.Fatal(err)
			}
			done()
			for range 20 {
				be, done, err := b.Pick("user-1", first)
				if err != nil {
					t.Fatal(err)
				}
				done()
				if be == first {
					t.Fatalf("Pick returned excluded backend %s", be)
				}
			}
			all := b.backends
			be, done, err := b.Pick("user-1", all...)
			if !errors.Is(err, ErrNoBackend) || be != nil || done == nil {
				t.Fatalf("Pick excluding all = (%v, done==nil:%v, %v), want (nil, non-nil done, ErrNoBackend)", be, done == nil, err)
			}
			done()
			if v := metricValue(t, reg, "blueprint_lb_no_backend_total"); v != 1 {
				t.Fatalf("no_backend_total = %v, want 1", v)
			}
		})
	}
}

func TestDoneIsIdempotent(t *testing.T) {
	tbs := newBackends(t, 1)
	b, reg := newBalancer(t, Config{}, tbs)
	_, done, err := b.Pick("")
	if err != nil {
		t.Fatal(err)
	}
	if got := status(b, tbs[0]).InFlight; got != 1 {
		t.Fatalf("in flight after Pick = %d, want 1", got)
	}
	done()
	done()
	if got := status(b, tbs[0]).InFlight; got != 0 {
		t.Fatalf("in flight after done twice = %d, want 0", got)
	}
	if v := metricValue(t, reg, "blueprint_lb_inflight", "backend", status(b, tbs[0]).Name); v != 0 {
		t.Fatalf("inflight gauge = %v, want 0", v)
	}
}

func TestLifecycle(t *testing.T) {
	tbs := newBackends(t, 2)
	b, _ := newBalancer(t, Config{HealthInterval: 10 * time.Millisecond}, tbs)
	ctx := context.Background()
	if err := b.Stop(ctx); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	start(t, b)
	if err := b.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	waitFor(t, "the checker runs", func() bool { return tbs[0].okChecks.Load() >= 3 })
	if err := b.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// After Stop returns, no more checks arrive.
	n := tbs[0].okChecks.Load()
	for range 5 {
		time.Sleep(10 * time.Millisecond) // give a leaked checker the chance to show up
		if got := tbs[0].okChecks.Load(); got != n {
			t.Fatalf("health checks continued after Stop: %d -> %d", n, got)
		}
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStartRespectsContext(t *testing.T) {
	tbs := newBackends(t, 1)
	b, _ := newBalancer(t, Config{}, tbs)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context = %v, want context.Canceled", err)
	}
	// The aborted check must not count against the backend.
	if !healthy(b, tbs[0]) {
		t.Fatal("a cancelled health check marked the backend down")
	}
}

func TestMetrics(t *testing.T) {
	tbs := newBackends(t, 2)
	tbs[1].failing.Store(true)
	b, reg := newBalancer(t, Config{}, tbs)
	start(t, b)
	_, done, _ := b.Pick("")
	done()

	b0, b1 := status(b, tbs[0]).Name, status(b, tbs[1]).Name
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"blueprint_lb_backend_up", []string{"backend", b0}, 1},
		{"blueprint_lb_backend_up", []string{"backend", b1}, 0},
		{"blueprint_lb_picks_total", []string{"backend", b0}, 1},
		{"blueprint_lb_inflight", []string{"backend", b0}, 0},
		{"blueprint_lb_health_checks_total", []string{"backend", b0, "result", "ok"}, 1},
		{"blueprint_lb_health_checks_total", []string{"backend", b1, "result", "fail"}, 1},
		{"blueprint_lb_backend_transitions_total", []string{"backend", b1, "state", "down"}, 1},
		{"blueprint_lb_retries_total", nil, 0},
		{"blueprint_lb_no_backend_total", nil, 0},
	}
	for _, c := range checks {
		if got := metricValue(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

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

	// A second Balancer cannot register the same metrics on the same registry.
	if _, err := New(Config{}, urls(tbs), nil, reg); err == nil {
		t.Error("second Balancer on one registry: want an error")
	}
}

func TestConcurrentUse(t *testing.T) {
	for _, strategy := range []string{RoundRobin, LeastConn, ConsistentHash} {
		t.Run(strategy, func(t *testing.T) {
			tbs := newBackends(t, 3)
			b, _ := newBalancer(t, Config{Strategy: strategy, HealthInterval: 5 * time.Millisecond}, tbs)
			start(t, b)

			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 500 {
						be, done, err := b.Pick(fmt.Sprint("key-", g, "-", i))
						if err == nil {
							if i%50 == 0 {
								b.markFailed(be, errors.New("test"))
							}
							done()
						}
						if i%100 == 0 {
							b.Backends()
						}
					}
				})
			}
			wg.Go(func() {
				for i := range 20 {
					tbs[i%3].failing.Store(i%2 == 0)
					time.Sleep(2 * time.Millisecond)
				}
				for _, tb := range tbs {
					tb.failing.Store(false)
				}
			})
			wg.Wait()
			for _, s := range b.Backends() {
				if s.InFlight != 0 {
					t.Errorf("%s: %d in flight after all requests finished", s.Name, s.InFlight)
				}
			}
		})
	}
}

func TestNilRegistererAndLogger(t *testing.T) {
	tbs := newBackends(t, 1)
	b, err := New(Config{}, urls(tbs), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	defer b.Stop(context.Background())
	if _, done, err := b.Pick(""); err != nil {
		t.Fatal(err)
	} else {
		done()
	}
	// Unregistered metrics still work; registering them later is possible.
	if err := prometheus.NewRegistry().Register(b.metrics.retries); err != nil {
		t.Fatal(err)
	}
}
