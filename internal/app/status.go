package app

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/blueprint-media/blueprint/internal/edge"
	"github.com/blueprint-media/blueprint/internal/lb"
)

// Status is the operator's view of one process: its roles, listeners, the
// load balancer's backends, the edge cache and the queue.
type Status struct {
	Roles      []string      `json:"roles"`
	URLs       URLs          `json:"urls"`
	Ready      bool          `json:"ready"`
	Failing    []string      `json:"failing,omitempty"`
	Backends   []lb.Status   `json:"lb_backends,omitempty"`
	Edge       *edge.Stats   `json:"edge,omitempty"`
	QueueDepth *uint64       `json:"queue_depth,omitempty"`
	Caches     []CacheStatus `json:"caches,omitempty"`
	Time       time.Time     `json:"time"`
}

// Status reports the process's current state.
func (a *App) Status(ctx context.Context) Status {
	s := Status{Roles: a.cfg.Roles, URLs: a.URLs(), Time: time.Now().UTC()}
	ok, failed := a.checks.Run(ctx)
	s.Ready = ok
	for name, msg := range failed {
		s.Failing = append(s.Failing, name+": "+msg)
	}
	if a.balancer != nil {
		s.Backends = a.balancer.Backends()
	}
	if a.edge != nil {
		st := a.edge.Stats()
		s.Edge = &st
	}
	s.Caches = a.caches()
	if a.q != nil {
		if d, err := a.q.Depth(ctx); err == nil {
			s.QueueDepth = &d
		}
	}
	return s
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"pct": formatPct,
	"ratio": func(a, b int64) string {
		if a+b == 0 {
			return "—"
		}
		return template.HTMLEscapeString(formatPct(float64(a) / float64(a+b)))
	},
}).Parse(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Blueprint · status</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem;color:#1d1d1f}table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.3rem .7rem;text-align:left}.up{color:#2e7d32}.down{color:#c62828}</style>
<h1>Blueprint — this process</h1>
<p>Roles: <b>{{range $i, $r := .Roles}}{{if $i}}, {{end}}{{$r}}{{end}}</b> ·
{{if .Ready}}<span class="up">ready</span>{{else}}<span class="down">not ready</span>{{end}}
{{range .Failing}}<br><span class="down">{{.}}</span>{{end}}</p>
<h2>Listeners</h2>
<table><tr><th>gateway</th><td>{{.URLs.Gateway}}</td></tr><tr><th>edge</th><td>{{.URLs.Edge}}</td></tr>
<tr><th>origin</th><td>{{.URLs.Origin}}</td></tr><tr><th>broker</th><td>{{or .URLs.Broker "in-process only"}}</td></tr>
<tr><th>frontends</th><td>{{range .URLs.Frontends}}{{.}}<br>{{end}}</td></tr></table>
{{if .Backends}}<h2>Load balancer</h2><table><tr><th>backend</th><th>state</th><th>in flight</th><th>picks</th><th>last error</th></tr>
{{range .Backends}}<tr><td>{{.URL}}</td><td>{{if .Healthy}}<span class="up">up</span>{{else}}<span class="down">down</span>{{end}}</td><td>{{.InFlight}}</td><td>{{.Picks}}</td><td>{{.LastError}}</td></tr>{{end}}</table>{{end}}
{{with .Edge}}<h2>CDN edge</h2><table><tr><th>hit ratio</th><td>{{ratio .Hits .Misses}}</td></tr><tr><th>hits / misses / stale / revalidated / passes / errors</th><td>{{.Hits}} / {{.Misses}} / {{.Stale}} / {{.Revalidated}} / {{.Passes}} / {{.Errors}}</td></tr>
<tr><th>origin fetches</th><td>{{.OriginFetches}}</td></tr><tr><th>memory tier</th><td>{{.MemoryObjects}} objects, {{.MemoryBytes}} bytes</td></tr><tr><th>disk tier</th><td>{{.Objects}} objects, {{.DiskBytes}} bytes</td></tr></table>{{end}}
{{if .Caches}}<h2>Caches</h2><table><tr><th>cache</th><th>hit ratio</th><th>L1 hits / misses</th><th>L2 hits</th><th>loads</th><th>entries</th><th>invalidations received</th></tr>
{{range .Caches}}<tr><td>{{.Name}}</td><td>{{pct .HitRatio}}</td><td>{{.Hits}} / {{.Misses}}</td><td>{{.L2Hits}}</td><td>{{.Loads}}</td><td>{{.Entries}}</td><td>{{.Invalidations}}</td></tr>{{end}}</table>{{end}}
{{with .QueueDepth}}<h2>Queue</h2><p>{{.}} jobs waiting or in flight</p>{{end}}
<p><a href="/status.json">JSON</a> · <a href="/metrics">metrics</a> · <a href="/readyz">readyz</a> · <a href="/debug/pprof/">pprof</a></p>`))

func formatPct(f float64) string { return fmt.Sprintf("%.1f %%", f*100) }

func (a *App) statusHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a.Status(r.Context()))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusPage.Execute(w, a.Status(r.Context()))
	})
}
