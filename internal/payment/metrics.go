package payment

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	intents      *prometheus.CounterVec
	payouts      *prometheus.CounterVec
	replays      prometheus.Counter
	provider     *prometheus.HistogramVec
	providerErrs *prometheus.CounterVec
	webhooksIn   *prometheus.CounterVec
	deliveries   *prometheus.CounterVec
	recovered    *prometheus.CounterVec
	drift        prometheus.Gauge
	reconciled   *prometheus.CounterVec
}

func newMetrics() *metrics {
	ns, sub := "blueprint", "payment"
	return &metrics{
		intents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "intent_transitions_total",
			Help: "Payment intents moved into each state."}, []string{"state"}),
		payouts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "payout_transitions_total",
			Help: "Payouts moved into each state."}, []string{"state"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "idempotent_replays_total",
			Help: "Requests answered with the stored response of an earlier request with the same idempotency key."}),
		provider: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "provider_request_duration_seconds",
			Help: "Time of calls to the payment provider.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"op"}),
		providerErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "provider_errors_total",
			Help: "Failed calls to the payment provider, temporary (outcome unknown) or definitive."}, []string{"op", "kind"}),
		webhooksIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "webhooks_received_total",
			Help: "Incoming provider webhooks by result (applied, duplicate, ignored, bad_signature, stale, malformed_header, malformed, failed, unknown_provider)."},
			[]string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "webhook_deliveries_total",
			Help: "Outgoing webhook delivery attempts to creators' endpoints by result (delivered, retry, failed)."}, []string{"result"}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "recovered_total",
			Help: "Payments and payouts the background job drove forward: interrupted before the provider answered, still settling, or abandoned."},
			[]string{"what"}),
		drift: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "reconciliation_drift",
			Help: "Discrepancies between the ledger and the provider found by the last reconciliation."}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reconciliations_total",
			Help: "Reconciliation runs by result (clean, drift, error)."}, []string{"result"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.intents, m.payouts, m.replays, m.provider, m.providerErrs, m.webhooksIn, m.deliveries,
		m.recovered, m.drift, m.reconciled} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) observeProvider(op string, start time.Time, err error) {
	m.provider.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		kind := "definitive"
		if Temporary(err) {
			kind = "temporary"
		}
		m.providerErrs.WithLabelValues(op, kind).Inc()
	}
}
