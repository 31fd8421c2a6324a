package notify

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	decisions *prometheus.CounterVec // type, decision
	email     *prometheus.CounterVec // outcome
	push      *prometheus.CounterVec // outcome
	fanout    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "notify", Name: "notifications_total",
			Help: "Notifications considered, by type and decision: created, deduplicated (same fact notified before) or muted (every channel turned off).",
		}, []string{"type", "decision"}),
		email: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "notify", Name: "emails_total",
			Help: "Email send attempts by outcome: sent, retry, failed, unknown (the server may have accepted it; never resent).",
		}, []string{"outcome"}),
		push: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "notify", Name: "pushes_total",
			Help: "Web Push requests by outcome: sent, retry, failed, gone (subscription dropped on 404/410).",
		}, []string{"outcome"}),
		fanout: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "notify", Name: "fanout_notifications_total",
			Help: "Notifications created by fanning uploads out to followers.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.email, m.push, m.fanout)
	}
	return m
}
