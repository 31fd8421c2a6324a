package idgen

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a generator's Prometheus collectors (namespace "blueprint",
// subsystem "idgen"). The count of issued IDs and the worker ID are read
// under the generator's lock at scrape time, so the hot path pays nothing
// for them.
type metrics struct {
	issued     prometheus.CounterFunc
	worker     prometheus.GaugeFunc
	rollbacks  prometheus.Counter
	refusals   prometheus.Counter
	seqWaits   prometheus.Counter
	losses     prometheus.Counter
	markWrites prometheus.Counter
	markErrors prometheus.Counter
}

func newMetrics(g *Generator) metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "blueprint", Subsystem: "idgen", Name: name, Help: help}
	}
	return metrics{
		issued: prometheus.NewCounterFunc(prometheus.CounterOpts(opts("ids_issued_total",
			"IDs issued by the generator.")), func() float64 {
			g.mu.Lock()
			defer g.mu.Unlock()
			return float64(g.issued)
		}),
		worker: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("worker_id",
			"Worker ID the generator holds a lease on, -1 without a lease.")), func() float64 {
			return float64(g.WorkerID())
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts(opts("clock_rollbacks_total",
			"Times the clock read earlier than the last millisecond the generator issued."))),
		refusals: prometheus.NewCounter(prometheus.CounterOpts(opts("clock_refusals_total",
			"Calls refused because the clock was further behind than the bound."))),
		seqWaits: prometheus.NewCounter(prometheus.CounterOpts(opts("sequence_waits_total",
			"Times a shard's sequence of a millisecond was used up and a call waited for the next."))),
		losses: prometheus.NewCounter(prometheus.CounterOpts(opts("lease_losses_total",
			"Worker-ID leases lost (expired, revoked or taken) while the generator ran."))),
		markWrites: prometheus.NewCounter(prometheus.CounterOpts(opts("high_water_writes_total",
			"High-water marks stored with the lease backend."))),
		markErrors: prometheus.NewCounter(prometheus.CounterOpts(opts("high_water_errors_total",
			"Failed attempts to store a high-water mark."))),
	}
}

// Collectors returns the generator's Prometheus collectors.
func (g *Generator) Collectors() []prometheus.Collector {
	m := &g.m
	return []prometheus.Collector{m.issued, m.worker, m.rollbacks, m.refusals, m.seqWaits, m.losses, m.markWrites, m.markErrors}
}

// Register registers the generator's collectors with reg.
func (g *Generator) Register(reg prometheus.Registerer) error {
	for _, c := range g.Collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("idgen: register metrics: %w", err)
		}
	}
	return nil
}
