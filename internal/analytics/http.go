package analytics

import (
	"embed"
	"html/template"
	"net/http"
	"strconv"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
)

// Routes mounts the public API on a frontend instance:
//
//	POST /api/v1/analytics/sessions      a view session for a page load
//	POST /api/v1/analytics/events        the batched ingest
//	GET  /api/v1/analytics/videos/{id}   a video's numbers (its creator only)
//	GET  /api/v1/analytics/creators/me   the caller's numbers as a creator
func (s *Service) Routes(mux *http.ServeMux, instance string) {
	mux.HandleFunc("POST /api/v1/analytics/sessions", s.handleSession)
	mux.HandleFunc("POST /api/v1/analytics/events", s.handleEvents)
	mux.HandleFunc("GET /api/v1/analytics/videos/{id}", s.handleVideo)
	mux.HandleFunc("GET /api/v1/analytics/creators/me", s.handleCreator)
}

// AdminRoutes mounts the operator view on the admin listener:
//
//	GET /analytics            platform-wide numbers (HTML)
//	GET /analytics/api        the same as JSON, with the pipeline state
//	GET /analytics/static/    the page's scripts (the frontends' /static/)
func (s *Service) AdminRoutes(mux *http.ServeMux, static http.Handler) {
	mux.HandleFunc("GET /analytics", s.handleOperatorPage)
	mux.HandleFunc("GET /analytics/api", s.handleOperatorAPI)
	if static != nil {
		mux.Handle("GET /analytics/static/", http.StripPrefix("/analytics", static))
	}
}

// rangeOf reads ?days=N (1–3650, default 28).
func (s *Service) rangeOf(r *http.Request) (Range, error) {
	n := 28
	if v := r.URL.Query().Get("days"); v != "" {
		d, err := strconv.Atoi(v)
		if err != nil || d < 1 || d > 3650 {
			return Range{}, errs.E(errs.Invalid, "days must be 1..3650")
		}
		n = d
	}
	return LastDays(s.now(), n), nil
}

func (s *Service) handleVideo(w http.ResponseWriter, r *http.Request) {
	me := account.FromContext(r.Context())
	if me.UserID == 0 {
		httpx.Error(w, r, s.logger, errs.E(errs.Unauthorized, "log in to see analytics"))
		return
	}
	id, err := idgen.Parse(r.PathValue("id"))
	if err != nil {
		httpx.Error(w, r, s.logger, errs.E(errs.NotFound, "no such id: %q", r.PathValue("id")))
		return
	}
	v, err := s.lookup(r.Context(), id)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	if v.CreatorID != me.UserID {
		httpx.Error(w, r, s.logger, errs.E(errs.NotFound, "no video with id %d among yours", id))
		return
	}
	rg, err := s.rangeOf(r)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	st, err := s.VideoStats(r.Context(), id, rg)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	w.Header().Set("Cache-Control", "private, no-store")
	httpx.JSON(w, http.StatusOK, st)
}

func (s *Service) handleCreator(w http.ResponseWriter, r *http.Request) {
	me := account.FromContext(r.Context())
	if me.UserID == 0 {
		httpx.Error(w, r, s.logger, errs.E(errs.Unauthorized, "log in to see analytics"))
		return
	}
	rg, err := s.rangeOf(r)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	st, err := s.CreatorStats(r.Context(), me.UserID, rg)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	w.Header().Set("Cache-Control", "private, no-store")
	httpx.JSON(w, http.StatusOK, st)
}

func (s *Service) handleOperatorAPI(w http.ResponseWriter, r *http.Request) {
	rg, err := s.rangeOf(r)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	st, err := s.PlatformStats(r.Context(), rg)
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	p, err := s.PipelineState(r.Context())
	if err != nil {
		httpx.Error(w, r, s.logger, err)
		return
	}
	httpx.JSON(w, http.StatusOK, struct {
		Stats
		Pipeline Pipeline `json:"pipeline"`
	}{st, p})
}

//go:embed operator.html
var operatorFS embed.FS

var operatorPage = template.Must(template.ParseFS(operatorFS, "operator.html"))

func (s *Service) handleOperatorPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	operatorPage.Execute(w, nil)
}
