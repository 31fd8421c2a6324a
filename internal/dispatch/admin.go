package dispatch

import (
	"errors"
	"html/template"
	"net/http"
	"strconv"

	"github.com/blueprint-media/blueprint/internal/httpx"
)

var adminPage = template.Must(template.New("dispatch").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dispatcher · Blueprint admin</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}
td,th{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:left}code{font-size:12px}.err{color:#b00}</style></head>
<body><h1>Dispatcher</h1>
<p><a href="/">← status</a> · <a href="/dispatch.json">JSON</a></p>
<h2>Routes</h2>
<table><tr><th>route</th><th>lane</th><th>kinds</th><th>capacity</th><th>max deliver</th><th>backlog</th><th>handled here</th></tr>
{{range .Routes}}<tr><td>{{.Name}}</td><td>{{.Lane}}</td><td>{{range .Kinds}}<code>{{.}}</code> {{else}}all{{end}}</td>
<td>{{.Capacity}}</td><td>{{.MaxDeliver}}</td><td>{{.Backlog}}</td><td>{{if .Local}}yes{{else}}no{{end}}</td></tr>{{end}}
</table>
<h2>Dead letters ({{len .Dead}})</h2>
{{if .Dead}}<table><tr><th>seq</th><th>route</th><th>event</th><th>deliveries</th><th>failed at</th><th>error</th><th></th></tr>
{{range .Dead}}<tr><td>{{.Seq}}</td><td>{{.Route}}</td><td>{{if .Raw}}<code>{{.Raw}}</code>{{else}}{{.Event.Kind}} #{{.Event.ID}} (subject {{.Event.SubjectID}}){{end}}</td>
<td>{{.Deliveries}}</td><td>{{.FailedAt}}</td><td class="err">{{.Error}}</td>
<td><form method="post" action="/dispatch/dlq/{{.Seq}}/replay"><button>Replay</button></form></td></tr>{{end}}
</table>{{else}}<p>None.</p>{{end}}
</body></html>`))

// AdminRoutes mounts the dispatcher's operator pages on the admin mux:
// GET /dispatch (routes, backlogs, dead letters with a Replay button),
// GET /dispatch.json and POST /dispatch/dlq/{seq}/replay.
func (d *Dispatcher) AdminRoutes(mux *http.ServeMux) {
	type view struct {
		Routes []RouteStatus `json:"routes"`
		Dead   []DeadLetter  `json:"dead_letters"`
	}
	load := func(r *http.Request) (view, error) {
		dead, err := d.DeadLetters(r.Context(), 200)
		return view{Routes: d.Status(), Dead: dead}, err
	}
	mux.HandleFunc("GET /dispatch", func(w http.ResponseWriter, r *http.Request) {
		v, err := load(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		adminPage.Execute(w, v)
	})
	mux.HandleFunc("GET /dispatch.json", func(w http.ResponseWriter, r *http.Request) {
		v, err := load(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		httpx.JSON(w, http.StatusOK, v)
	})
	replay := http.NewCrossOriginProtection().Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil {
			http.Error(w, "bad sequence number", http.StatusBadRequest)
			return
		}
		if err := d.Replay(r.Context(), seq); err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, ErrNotFound) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		if r.Header.Get("Accept") == "application/json" {
			httpx.JSON(w, http.StatusOK, map[string]any{"replayed": seq})
			return
		}
		http.Redirect(w, r, "/dispatch", http.StatusSeeOther)
	}))
	mux.Handle("POST /dispatch/dlq/{seq}/replay", replay)
}
