package lock

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the lock metrics (namespace "blueprint", subsystem "lock").
// A nil *Metrics records nothing.
type Metrics struct {
	acquisitions *prometheus.CounterVec
	wait         *prometheus.HistogramVec
	losses       *prometheus.CounterVec
	hold         *prometheus.HistogramVec
}

// NewMetrics creates the lock metrics and registers them with reg when reg
// is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "lock", Name: "acquisitions_total",
			Help: "Lock acquisition attempts by backend and result (acquired, locked, error).",
		}, []string{"backend", "result"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "lock", Name: "wait_seconds",
			Help:    "Time from calling Lock to acquiring the lock (TryLock not included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"backend"}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "lock", Name: "losses_total",
			Help: "Leases lost before Unlock (expiry, keepalive failure, session loss).",
		}, []string{"backend"}),
		hold: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "lock", Name: "hold_seconds",
			Help:    "Time a lease was held, from acquisition to Unlock.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.acquisitions, m.wait, m.losses, m.hold)
	}
	return m
}

// acquired counts a grant; wait is observed for Lock, not for TryLock (wait < 0).
func (m *Metrics) acquired(backend string, wait time.Duration) {
	if m == nil {
		return
	}
	m.acquisitions.WithLabelValues(backend, "acquired").Inc()
	if wait >= 0 {
		m.wait.WithLabelValues(backend).Observe(wait.Seconds())
	}
}

func (m *Metrics) failed(backend string, err error) {
	if m == nil {
		return
	}
	result := "error"
	if err == ErrLocked {
		result = "locked"
	}
	m.acquisitions.WithLabelValues(backend, result).Inc()
}

func (m *Metrics) lost(backend string) {
	if m == nil {
		return
	}
	m.losses.WithLabelValues(backend).Inc()
}

func (m *Metrics) released(backend string, held time.Duration) {
	if m == nil {
		return
	}
	m.hold.WithLabelValues(backend).Observe(held.Seconds())
}
