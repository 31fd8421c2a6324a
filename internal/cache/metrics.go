package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exports a Cache's Stats as Prometheus metrics, reading one
// snapshot per scrape, so the cache's hot paths carry no metric updates.
type collector[K comparable, V any] struct {
	c *Cache[K, V]

	hits, misses, sets, deletes, evictions, rejections, expirations *prometheus.Desc
	entries, bytes, maxEntries, maxBytes                            *prometheus.Desc
}

// Collector returns a Prometheus collector of the cache's statistics,
// labelled cache=name, in namespace "blueprint", subsystem "cache":
//
//	blueprint_cache_hits_total, _misses_total, _sets_total, _deletes_total,
//	_evictions_total, _rejections_total, _expirations_total (counters),
//	blueprint_cache_entries, _bytes, _max_entries, _max_bytes (gauges).
//
// Several caches can be registered on one registry under different names.
func (c *Cache[K, V]) Collector(name string) prometheus.Collector {
	labels := prometheus.Labels{"cache": name}
	d := func(metric, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("blueprint", "cache", metric), help, nil, labels)
	}
	return &collector[K, V]{
		c:           c,
		hits:        d("hits_total", "Get calls that found a live entry."),
		misses:      d("misses_total", "Get calls that found no entry, or an expired one."),
		sets:        d("sets_total", "Set and SetWithTTL calls."),
		deletes:     d("deletes_total", "Delete calls that removed an entry."),
		evictions:   d("evictions_total", "Entries evicted by the policy to make room."),
		rejections:  d("rejections_total", "Entries the policy turned away: lost the admission duel, or too big for a shard."),
		expirations: d("expirations_total", "Entries removed because their TTL had passed."),
		entries:     d("entries", "Entries held, expired ones not yet removed included."),
		bytes:       d("bytes", "Sum of the costs of the entries held (bytes when costs are sizes)."),
		maxEntries:  d("max_entries", "Configured bound on entries; 0 if none."),
		maxBytes:    d("max_bytes", "Configured bound on the sum of costs; 0 if none."),
	}
}

// Register registers the cache's collector (see Collector) on reg under
// the given name.
func (c *Cache[K, V]) Register(reg prometheus.Registerer, name string) error {
	if err := reg.Register(c.Collector(name)); err != nil {
		return fmt.Errorf("cache: register metrics of %q: %w", name, err)
	}
	return nil
}

// Describe sends the metrics' descriptors.
func (m *collector[K, V]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.hits, m.misses, m.sets, m.deletes, m.evictions,
		m.rejections, m.expirations, m.entries, m.bytes, m.maxEntries, m.maxBytes} {
		ch <- d
	}
}

// Collect sends the current values.
func (m *collector[K, V]) Collect(ch chan<- prometheus.Metric) {
	st := m.c.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(m.hits, st.Hits)
	counter(m.misses, st.Misses)
	counter(m.sets, st.Sets)
	counter(m.deletes, st.Deletes)
	counter(m.evictions, st.Evictions)
	counter(m.rejections, st.Rejections)
	counter(m.expirations, st.Expirations)
	gauge(m.entries, float64(st.Entries))
	gauge(m.bytes, float64(st.Bytes))
	gauge(m.maxEntries, float64(st.MaxEntries))
	gauge(m.maxBytes, float64(st.MaxBytes))
}
