// Package web holds Blueprint's server-rendered pages and their static
// assets, embedded in the binary with go:embed: the templates, the style
// sheet, the page scripts, and the vendored hls.js and tus-js-client
// (pinned; see static/vendor/VERSIONS.md).
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Pages renders the HTML pages.
type Pages struct {
	t map[string]*template.Template
}

// NewPages parses the embedded templates.
func NewPages() (*Pages, error) {
	funcs := template.FuncMap{
		"mul100": func(f float64) float64 { return f * 100 },
		"ago":    func(t time.Time) string { return t.Format("2 Jan 2006 15:04") },
		"duration": func(s float64) string {
			d := time.Duration(s * float64(time.Second)).Round(time.Second)
			return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
		},
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &Pages{t: map[string]*template.Template{}}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: %s: %w", n, err)
		}
		p.t[n[len("templates/"):len(n)-len(".html")]] = t
	}
	return p, nil
}

// Render writes page name with data and the given status.
func (p *Pages) Render(w http.ResponseWriter, status int, name string, data any) {
	t, ok := p.t[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "page failed to render", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// Static returns a handler for the embedded assets, to be mounted at
// /static/.
func Static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(sub)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
}
