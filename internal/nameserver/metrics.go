package nameserver

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Server on one registry (root, TLD and
// authoritative instances in one process), told apart by the "server"
// label.
type metrics struct {
	queries           *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	malformed         *prometheus.CounterVec
	rrl               *prometheus.CounterVec
	reloads           *prometheus.CounterVec
	serial            *prometheus.GaugeVec
	transfers         *prometheus.CounterVec
	notifies          *prometheus.CounterVec
	healthTransitions *prometheus.CounterVec
	poolAnswers       *prometheus.CounterVec
	truncated         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "queries_total",
			Help: "Queries answered by the authoritative servers, by server, transport, query type and response code.",
		}, []string{"server", "proto", "qtype", "rcode"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "query_duration_seconds",
			Help:    "Time from a parsed query to its reply written, by server and transport.",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3},
		}, []string{"server", "proto"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "malformed_total",
			Help: "Packets that could not be parsed as a DNS query.",
		}, []string{"server"}),
		rrl: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "rrl_total",
			Help: "Responses over the response rate limit, by action: dropped or slipped (sent truncated).",
		}, []string{"server", "action"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "zone_loads_total",
			Help: "Zone loads and reloads, by result.",
		}, []string{"server", "result"}),
		serial: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "zone_serial",
			Help: "SOA serial served, by zone.",
		}, []string{"server", "zone"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "transfers_total",
			Help: "Outgoing zone transfers, by kind (axfr, ixfr, ixfr-full, ixfr-uptodate) and result.",
		}, []string{"server", "kind", "result"}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "notifies_total",
			Help: "NOTIFY messages to secondaries, by result.",
		}, []string{"server", "result"}),
		healthTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "target_transitions_total",
			Help: "Pool targets going up or down by their health checks.",
		}, []string{"to"}),
		poolAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "pool_answers_total",
			Help: "Answers from dynamic pools, by policy and whether every target was unhealthy (fail_open).",
		}, []string{"server", "policy", "fail_open"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "nameserver", Name: "truncated_total",
			Help: "UDP replies sent truncated (TC) because they did not fit the client's buffer.",
		}, []string{"server"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	reg1 := func(c **prometheus.CounterVec) {
		if err == nil {
			*c, err = register(reg, *c)
		}
	}
	for _, c := range []**prometheus.CounterVec{&m.queries, &m.malformed, &m.rrl, &m.reloads, &m.transfers,
		&m.notifies, &m.healthTransitions, &m.poolAnswers, &m.truncated} {
		reg1(c)
	}
	if err == nil {
		m.latency, err = register(reg, m.latency)
	}
	if err == nil {
		m.serial, err = register(reg, m.serial)
	}
	if err != nil {
		return nil, fmt.Errorf("nameserver: metrics: %w", err)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same description (several servers in one process share them).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(T); ok {
				return ex, nil
			}
		}
		return c, err
	}
	return c, nil
}

// queryCounters caches one server's query counters by transport, query
// type and rcode, so the hot path does no label hashing.
type queryCounters struct {
	vec    *prometheus.CounterVec
	server string
	cells  [2][17][24]atomic.Pointer[prometheus.Counter]
}

// qtypeSlot returns the cache slot of common query types, 0 for others.
func qtypeSlot(t uint16) int {
	switch t {
	case dns.TypeA:
		return 1
	case dns.TypeAAAA:
		return 2
	case dns.TypeNS:
		return 3
	case dns.TypeCNAME:
		return 4
	case dns.TypeSOA:
		return 5
	case dns.TypeMX:
		return 6
	case dns.TypeTXT:
		return 7
	case dns.TypeSRV:
		return 8
	case dns.TypeDS:
		return 9
	case dns.TypeCAA:
		return 10
	case dns.TypeHTTPS:
		return 11
	case dns.TypeANY:
		return 12
	case dns.TypePTR:
		return 13
	case dns.TypeDNSKEY:
		return 14
	case dns.TypeSVCB:
		return 15
	case dns.TypeNAPTR:
		return 16
	}
	return 0
}

func (q *queryCounters) inc(tcp bool, qtype uint16, rcode int) {
	proto := 0
	if tcp {
		proto = 1
	}
	slot := qtypeSlot(qtype)
	if slot == 0 || rcode < 0 || rcode >= 24 {
		q.vec.WithLabelValues(q.server, [2]string{"udp", "tcp"}[proto], typeName(qtype), rcodeName(rcode)).Inc()
		return
	}
	cell := &q.cells[proto][slot][rcode]
	c := cell.Load()
	if c == nil {
		v := q.vec.WithLabelValues(q.server, [2]string{"udp", "tcp"}[proto], typeName(qtype), rcodeName(rcode))
		c = &v
		cell.Store(c)
	}
	(*c).Inc()
}

// typeName bounds the qtype label: known types by name, others "other".
func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "other"
}

func rcodeName(r int) string {
	if s, ok := dns.RcodeToString[r]; ok {
		return s
	}
	return "other"
}
