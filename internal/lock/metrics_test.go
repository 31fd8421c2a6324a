package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue returns the sum of the counter or histogram count of the
// family name whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += counterOrCount(m)
		}
	}
	return sum
}

func counterOrCount(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	if m.Histogram != nil {
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetricsAndLeaseContext(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := lock.NewMetrics(reg)
	path, newLocker := openSQLite(t, lock.Options{TTL: 300 * time.Millisecond, MaxPoll: 10 * time.Millisecond, Metrics: m})
	a, b := newLocker(t), newLocker(t)

	la, err := a.Lock(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := la.Context(ctx)
	defer cancel()
	if _, err := b.TryLock(ctx, "m"); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock = %v, want ErrLocked", err)
	}
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lctx.Done():
	case <-time.After(time.Second):
		t.Fatal("lease context not cancelled after Unlock")
	}

	// A lease lost to a takeover counts as a loss.
	lb, err := b.Lock(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	expireAll(t, path)
	if _, err := a.TryLock(ctx, "m"); err != nil {
		t.Fatalf("TryLock after expiry: %v", err)
	}
	select {
	case <-lb.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("loss not reported")
	}

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"blueprint_lock_acquisitions_total", map[string]string{"backend": "sqlite", "result": "acquired"}, 3},
		{"blueprint_lock_acquisitions_total", map[string]string{"backend": "sqlite", "result": "locked"}, 1},
		{"blueprint_lock_wait_seconds", map[string]string{"backend": "sqlite"}, 2},
		{"blueprint_lock_hold_seconds", map[string]string{"backend": "sqlite"}, 1},
		{"blueprint_lock_losses_total", map[string]string{"backend": "sqlite"}, 1},
	} {
		if got := metricValue(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
