package pgrepl

import "github.com/prometheus/client_golang/prometheus"

// Reads returns r's read counter for target, for the tests.
func Reads(r *Router, target string) prometheus.Counter { return r.reads.WithLabelValues(target) }
