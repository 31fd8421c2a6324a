package lb

import "github.com/prometheus/client_golang/prometheus"

// metrics holds the Prometheus collectors of one Balancer.
type metrics struct {
	up          *prometheus.GaugeVec
	picks       *prometheus.CounterVec
	inflight    *prometheus.GaugeVec
	checks      *prometheus.CounterVec
	transitions *prometheus.CounterVec
	retries     prometheus.Counter
	noBackend   prometheus.Counter
}

// backendMetrics are the children of metrics for one backend, resolved once
// so the request path does no label lookups.
type backendMetrics struct {
	up           prometheus.Gauge
	picks        prometheus.Counter
	inflight     prometheus.Gauge
	checksOK     prometheus.Counter
	checksFailed prometheus.Counter
	toUp         prometheus.Counter
	toDown       prometheus.Counter
}

func newMetrics() *metrics {
	const ns, sub = "blueprint", "lb"
	return &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "backend_up",
			Help: "Whether the backend is healthy (1) or down (0).",
		}, []string{"backend"}),
		picks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "picks_total",
			Help: "Requests assigned to the backend.",
		}, []string{"backend"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "inflight",
			Help: "Requests assigned to the backend and not yet finished.",
		}, []string{"backend"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "health_checks_total",
			Help: "Active health checks of the backend, by result (ok or fail).",
		}, []string{"backend", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "backend_transitions_total",
			Help: "Times the backend changed state, by the state it entered (up or down).",
		}, []string{"backend", "state"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "retries_total",
			Help: "Proxied requests retried on another backend after a connection failure.",
		}),
		noBackend: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "no_backend_total",
			Help: "Picks that failed because no healthy backend was available.",
		}),
	}
}

func (m *metrics) forBackend(name string) backendMetrics {
	return backendMetrics{
		up:           m.up.WithLabelValues(name),
		picks:        m.picks.WithLabelValues(name),
		inflight:     m.inflight.WithLabelValues(name),
		checksOK:     m.checks.WithLabelValues(name, "ok"),
		checksFailed: m.checks.WithLabelValues(name, "fail"),
		toUp:         m.transitions.WithLabelValues(name, "up"),
		toDown:       m.transitions.WithLabelValues(name, "down"),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.picks, m.inflight, m.checks, m.transitions, m.retries, m.noBackend}
}

// register registers every collector with reg, or none of them. A second
// Balancer on the same registry fails here, since the metric names collide.
func (m *metrics) register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}
