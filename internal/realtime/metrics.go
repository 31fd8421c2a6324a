package realtime

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the real-time counters of one process, shared by its hubs,
// registry and router.
type Metrics struct {
	connections *prometheus.GaugeVec   // instance
	delivered   *prometheus.CounterVec // instance
	dropped     *prometheus.CounterVec // instance, reason
	refused     *prometheus.CounterVec // instance, reason
	channels    *prometheus.GaugeVec   // instance
	routed      prometheus.Counter
	unrouted    prometheus.Counter
	broadcasts  prometheus.Counter
	resyncs     prometheus.Counter
	entries     prometheus.Gauge
}

// NewMetrics returns the metrics, registered on reg (which may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "connections",
			Help: "Live (server-sent events) connections held, by frontend instance.",
		}, []string{"instance"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "delivered_messages_total",
			Help: "Messages written to live connections, by frontend instance.",
		}, []string{"instance"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "dropped_messages_total",
			Help: "Messages an instance received but did not write: no_connection (the user left meanwhile), slow_client (its queue was full; the connection is closed) or slow_hub (the NATS client dropped them; the hub fell behind).",
		}, []string{"instance", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "refused_connections_total",
			Help: "Live connections refused, by frontend instance and limit (user_limit, total_limit).",
		}, []string{"instance", "reason"}),
		channels: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "channels",
			Help: "Channels with local subscribers (one NATS subscription each), by frontend instance.",
		}, []string{"instance"}),
		broadcasts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "broadcasts_total",
			Help: "Messages the router published to a channel (one NATS message each, whatever the number of subscribers).",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "resyncs_total",
			Help: "Requests the router sent to an instance to recompute a user's channel subscriptions.",
		}),
		routed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "routed_messages_total",
			Help: "Messages the router published to a frontend instance holding the user.",
		}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "unrouted_messages_total",
			Help: "Messages for users with no live connection anywhere (nothing was published).",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "realtime", Name: "registry_entries",
			Help: "User-to-instance entries in this process's connection registry.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.delivered, m.dropped, m.refused, m.channels, m.routed, m.unrouted, m.broadcasts, m.resyncs, m.entries)
	}
	return m
}
