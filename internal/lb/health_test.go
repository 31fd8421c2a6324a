package lb

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestHealthThresholds(t *testing.T) {
	tbs := newBackends(t, 2)
	logs := &syncBuffer{}
	b, reg := newBalancerLog(t, Config{UnhealthyAfter: 3, HealthyAfter: 2}, tbs, slog.New(slog.NewTextHandler(logs, nil)))
	ctx := context.Background()
	tb := tbs[1]
	name := status(b, tb).Name

	// Rounds are run by hand here, so the count of checks is exact.
	b.checkAll(ctx)
	if !healthy(b, tb) {
		t.Fatal("healthy backend down after the first check")
	}

	tb.failing.Store(true)
	for i := 1; i <= 2; i++ {
		b.checkAll(ctx)
		if !healthy(b, tb) {
			t.Fatalf("down after %d failed checks, want 3", i)
		}
	}
	b.checkAll(ctx)
	if healthy(b, tb) {
		t.Fatal("still up after 3 failed checks")
	}
	if st := status(b, tb); !strings.Contains(st.LastError, "503") || st.LastCheck.IsZero() {
		t.Fatalf("status after failure = %+v, want LastError naming the 503", st)
	}
	for range 10 {
		be, done, err := b.Pick("")
		if err != nil {
			t.Fatal(err)
		}
		done()
		if be.URL.String() == tb.srv.URL {
			t.Fatal("Pick chose the unhealthy backend")
		}
	}
	b.checkAll(ctx) // more failures: no new transition

	tb.failing.Store(false)
	b.checkAll(ctx)
	if healthy(b, tb) {
		t.Fatal("up after 1 good check, want 2")
	}
	b.checkAll(ctx)
	if !healthy(b, tb) {
		t.Fatal("still down after 2 good checks")
	}
	if st := status(b, tb); st.LastError != "" {
		t.Fatalf("LastError = %q after a good check, want empty", st.LastError)
	}

	if n := strings.Count(logs.String(), "backend down"); n != 1 {
		t.Errorf("logged %d down transitions, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs.String(), "backend up"); n != 1 {
		t.Errorf("logged %d up transitions, want 1:\n%s", n, logs)
	}
	for state, want := range map[string]float64{"down": 1, "up": 1} {
		if got := metricValue(t, reg, "blueprint_lb_backend_transitions_total", "backend", name, "state", state); got != want {
			t.Errorf("transitions{state=%s} = %v, want %v", state, got, want)
		}
	}
	if got := metricValue(t, reg, "blueprint_lb_health_checks_total", "backend", name, "result", "fail"); got != 4 {
		t.Errorf("failed checks = %v, want 4", got)
	}
}

func TestStartChecksSynchronously(t *testing.T) {
	tbs := newBackends(t, 2)
	tbs[1].failing.Store(true)
	// A long interval: only Start's own round can have run.
	b, _ := newBalancer(t, Config{HealthInterval: time.Hour, UnhealthyAfter: 5}, tbs)
	start(t, b)
	// The first check decides at once, whatever UnhealthyAfter says.
	if healthy(b, tbs[1]) {
		t.Fatal("backend failing at Start is still up after Start returned")
	}
	if !healthy(b, tbs[0]) {
		t.Fatal("good backend down after Start")
	}
}

func TestHealthCheckerLoop(t *testing.T) {
	const unhealthyAfter, healthyAfter = 2, 3
	tbs := newBackends(t, 2)
	b, _ := newBalancer(t, Config{
		HealthInterval: 20 * time.Millisecond,
		UnhealthyAfter: unhealthyAfter,
		HealthyAfter:   healthyAfter,
	}, tbs)
	start(t, b)
	tb := tbs[0]

	tb.failing.Store(true)
	waitFor(t, "the failing backend is excluded", func() bool { return !healthy(b, tb) })
	if n := tb.failedChecks.Load(); n < unhealthyAfter {
		t.Fatalf("marked down after %d failed checks, want at least %d", n, unhealthyAfter)
	}
	for range 10 {
		be, done, err := b.Pick("")
		if err != nil {
			t.Fatal(err)
		}
		done()
		if be.URL.String() == tb.srv.URL {
			t.Fatal("Pick chose the excluded backend")
		}
	}

	okBefore := tb.okChecks.Load() // no check can pass while failing is set
	tb.failing.Store(false)
	waitFor(t, "the backend returns", func() bool { return healthy(b, tb) })
	if n := tb.okChecks.Load() - okBefore; n < healthyAfter {
		t.Fatalf("back up after %d good checks, want at least %d", n, healthyAfter)
	}
}

func TestHealthTimeout(t *testing.T) {
	tbs := newBackends(t, 1)
	b, _ := newBalancer(t, Config{HealthPath: "/slow", HealthTimeout: 50 * time.Millisecond}, tbs)
	began := time.Now()
	b.checkAll(context.Background())
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("a hanging health check took %v despite a 50ms timeout", took)
	}
	if healthy(b, tbs[0]) {
		t.Fatal("backend whose health check hangs is still up")
	}
}

func TestHealthCheckUnreachable(t *testing.T) {
	tbs := newBackends(t, 2)
	b, _ := newBalancer(t, Config{}, tbs)
	tbs[0].srv.Close()
	b.checkAll(context.Background())
	if healthy(b, tbs[0]) {
		t.Fatal("closed backend is up")
	}
	if st := status(b, tbs[0]); st.LastError == "" {
		t.Fatal("no LastError for a refused connection")
	}
}
