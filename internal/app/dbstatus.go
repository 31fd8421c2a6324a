package app

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

// dbStatus is what /db shows: the store and, with database.shard_catalog,
// the shard map and its recent moves.
type dbStatus struct {
	sqlstore.Status
	Shards *shard.Status `json:"shards,omitempty"`
}

func (a *App) dbStatus(ctx context.Context) (dbStatus, error) {
	st, err := a.db.Status(ctx, a.cfg.Database.URL)
	if err != nil {
		return dbStatus{}, err
	}
	out := dbStatus{Status: st}
	if a.shards != nil {
		sh, err := a.shards.Status(ctx)
		if err != nil {
			return out, err
		}
		out.Shards = &sh
	}
	return out, nil
}

// dbStatusHandlers serves the SQL store's status on the admin listener:
// /db (HTML) and /db.json — engine, URL (redacted), schema version, rows
// per table, on PostgreSQL the attached replicas and their lag and the
// read router's view, and the shard map when comments are sharded. The
// row counts are COUNT(*) per table, so each request scans the tables:
// an operator's page, not a probe.
func (a *App) dbStatusHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /db.json", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.dbStatus(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	mux.HandleFunc("GET /db", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.dbStatus(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		dbStatusPage.Execute(w, st)
	})
}

var dbStatusPage = template.Must(template.New("db").Parse(`<!doctype html><meta charset="utf-8">
<title>Blueprint · database</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem;color:#1d1d1f}table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.3rem .7rem;text-align:left}td.n{text-align:right}</style>
<h1>Blueprint — database</h1>
<table><tr><th>engine</th><td>{{.Engine}}</td></tr><tr><th>URL</th><td>{{.URL}}</td></tr><tr><th>schema version</th><td>{{.Version}}</td></tr></table>
{{if eq .Engine "postgres"}}<h2>Replicas</h2>{{if .Replicas}}<table><tr><th>replica</th><th>address</th><th>state</th><th>sync</th><th>lag (bytes)</th><th>lag (s)</th></tr>
{{range .Replicas}}<tr><td>{{.Name}}</td><td>{{.Addr}}</td><td>{{.State}}</td><td>{{.SyncState}}</td><td class="n">{{.LagBytes}}</td><td class="n">{{printf "%.3f" .LagSeconds}}</td></tr>{{end}}</table>
{{else}}<p>none attached</p>{{end}}{{end}}
{{if .Routing}}<h2>Read routing</h2><p>Pages read from a replica that has replayed the visitor's last write, else from the primary (node 0 is database.url).</p>
<table><tr><th>node</th><th>role</th><th>replayed WAL</th><th>lag (bytes)</th></tr>
{{range .Routing}}<tr><td>{{.Node}}</td><td>{{.Role}}</td><td>{{.Replayed}}</td><td class="n">{{.LagBytes}}</td></tr>{{end}}</table>{{end}}
{{with .Shards}}<h2>Shards (comments, likes)</h2><p>map version {{.Version}}{{if .Paused}} · paused by a move: {{range .Paused}}{{.}} {{end}}{{end}}</p>
<table><tr><th>cluster</th><th>primary</th><th>replicas</th><th>shards</th><th>ranges</th></tr>
{{range .Clusters}}<tr><td>{{.Name}}</td><td>{{.Primary}}</td><td class="n">{{.Replicas}}</td><td class="n">{{.Shards}}</td><td>{{.Ranges}}</td></tr>{{end}}</table>
{{if .Moves}}<table><tr><th>move</th><th>shard</th><th>from → to</th><th>step</th><th>started</th><th>rows</th><th>pause (ms)</th></tr>
{{range .Moves}}<tr><td>#{{.ID}}</td><td class="n">{{.Shard}}</td><td>{{.From}} → {{.To}}</td><td>{{.Step}}</td><td>{{.StartedAt.UTC.Format "2006-01-02 15:04:05"}}</td><td class="n">{{with .Rows}}{{.}}{{end}}</td><td class="n">{{with .PauseMS}}{{printf "%.1f" .}}{{end}}</td></tr>{{end}}</table>{{end}}{{end}}
<h2>Tables</h2><table><tr><th>table</th><th>rows</th></tr>
{{range .Tables}}<tr><td>{{.Name}}</td><td class="n">{{.Rows}}</td></tr>{{end}}</table>
<p><a href="/db.json">JSON</a> · <a href="/">process status</a></p>`))
