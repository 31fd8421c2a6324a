// Package telemetry sets up what every Blueprint process reports through:
// the log/slog logger, the Prometheus registry, and the admin listener
// that serves /metrics, /healthz, /readyz and /debug/pprof/ apart from
// the public one.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a logger writing to w at level ("debug".."error") in
// format "json" or "text".
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Checks holds the readiness checks of a process.
type Checks struct {
	mu     sync.Mutex
	checks map[string]func(context.Context) error
	ready  bool
}

// Add registers a named readiness check.
func (c *Checks) Add(name string, check func(context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]func(context.Context) error{}
	}
	c.checks[name] = check
}

// SetReady marks start-up finished (or, with false, shutting down).
func (c *Checks) SetReady(ready bool) {
	c.mu.Lock()
	c.ready = ready
	c.mu.Unlock()
}

// Run runs every check and returns the failures by name.
func (c *Checks) Run(ctx context.Context) (bool, map[string]string) {
	c.mu.Lock()
	ready := c.ready
	checks := make(map[string]func(context.Context) error, len(c.checks))
	for k, v := range c.checks {
		checks[k] = v
	}
	c.mu.Unlock()
	failed := map[string]string{}
	if !ready {
		failed["startup"] = "not ready (starting or stopping)"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for name, check := range checks {
		if err := check(ctx); err != nil {
			failed[name] = err.Error()
		}
	}
	return len(failed) == 0, failed
}

// AdminHandler serves /metrics, /healthz (the process is up), /readyz (every
// check passes) and /debug/pprof/. Extra routes may be added to the
// returned mux.
func AdminHandler(reg *prometheus.Registry, checks *Checks) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, failed := checks.Run(r.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			for name, msg := range failed {
				fmt.Fprintf(w, "%s: %s\n", name, msg)
			}
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
