package resolver

import (
	"sync"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the resolver's Prometheus metrics, namespace blueprint,
// subsystem resolver.
type metrics struct {
	queries     *prometheus.CounterVec   // client queries by qtype, rcode
	duration    *prometheus.HistogramVec // client query latency by cache result
	cache       *prometheus.CounterVec   // cache look-ups by result
	upstream    *prometheus.CounterVec   // upstream queries by transport, result
	upstreamDur prometheus.Histogram
	outstanding prometheus.Gauge
	dropped     *prometheus.CounterVec // client packets not answered, by reason
	limits      *prometheus.CounterVec // resolutions cut by a limit
	inflight    prometheus.Gauge

	// Resolved children of the vectors, for the per-query path.
	queryCache sync.Map // uint32(qtype)<<8 | rcode → prometheus.Counter
	latencies  map[result]prometheus.Observer
	lookups    map[result]prometheus.Counter
}

// query returns the counter of client queries of this type and rcode.
func (m *metrics) query(qtype uint16, rcode int) prometheus.Counter {
	k := uint32(qtype)<<8 | uint32(rcode&0xFF)
	if c, ok := m.queryCache.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.queries.WithLabelValues(qtypeLabel(qtype), rcodeLabel(rcode))
	m.queryCache.Store(k, c)
	return c
}

// latency returns the latency histogram of a cache result.
func (m *metrics) latency(res result) prometheus.Observer { return m.latencies[res] }

// lookup returns the cache look-up counter of a result, nil for resNone.
func (m *metrics) lookup(res result) prometheus.Counter { return m.lookups[res] }

func newMetrics() *metrics {
	const ns, sub = "blueprint", "resolver"
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "queries_total",
			Help: "Client queries answered, by query type and response code.",
		}, []string{"qtype", "rcode"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "query_duration_seconds",
			Help:    "Time from a client query's arrival to its reply, by cache result (hit, miss, stale, none).",
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"cache"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_lookups_total",
			Help: "Answer cache look-ups for client queries: hit (fresh), stale (expired, served after a failed refresh), miss.",
		}, []string{"result"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_queries_total",
			Help: "Queries sent to authoritative servers, by transport and result (ok, timeout, error, truncated, mismatch).",
		}, []string{"transport", "result"}),
		upstreamDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_query_duration_seconds",
			Help:    "Round-trip time of successful upstream queries.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}),
		outstanding: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_outstanding_queries",
			Help: "Upstream queries in flight.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_packets_total",
			Help: "Client packets not answered, by reason (short, response, overload).",
		}, []string{"reason"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "limit_hits_total",
			Help: "Resolutions cut short by a limit (referrals, cnames, queries, depth).",
		}, []string{"limit"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "inflight_client_queries",
			Help: "Client queries being resolved (cache misses in progress).",
		}),
		latencies: map[result]prometheus.Observer{},
		lookups:   map[result]prometheus.Counter{},
	}
	for _, res := range []result{resHit, resMiss, resStale, resNone} {
		m.latencies[res] = m.duration.WithLabelValues(string(res))
		if res != resNone {
			m.lookups[res] = m.cache.WithLabelValues(string(res))
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.queries, m.duration, m.cache, m.upstream, m.upstreamDur,
		m.outstanding, m.dropped, m.limits, m.inflight}
}

// qtypeLabel bounds the qtype label's values: common types by name, the
// rest "other".
func qtypeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeNS, dns.TypePTR, dns.TypeSOA,
		dns.TypeSRV, dns.TypeTXT, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeCAA, dns.TypeDS, dns.TypeDNSKEY,
		dns.TypeANY, dns.TypeDNAME, dns.TypeNAPTR, dns.TypeTLSA:
		return dns.TypeToString[t]
	}
	return "other"
}

// rcodeLabel names an rcode, bounded like qtypeLabel.
func rcodeLabel(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok && rc <= dns.RcodeBadCookie {
		return s
	}
	return "other"
}
