package search

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/web"
)

// Module serves search on every frontend: the API
//
//	GET /api/v1/search?q=TEXT&type=videos|creators&page=N&size=N
//
// and the page GET /search (results as you type, with search.js).
type Module struct {
	idx      Index
	pages    *web.Pages
	thumbURL func(key string) string
	logger   *slog.Logger
	slots    chan struct{}
	timeout  time.Duration

	queries *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// ModuleConfig configures the Module.
type ModuleConfig struct {
	// ThumbURL maps a thumbnail's object key to its public URL (nil: hits
	// carry no thumbnail URL).
	ThumbURL func(key string) string
	// MaxConcurrent bounds searches in flight per process (default 32); a
	// search that waits longer than a second for a slot gets 503.
	MaxConcurrent int
	// Timeout bounds one search (default 5 s).
	Timeout time.Duration
}

// NewModule returns the search Module over idx. reg may be nil.
func NewModule(idx Index, pages *web.Pages, cfg ModuleConfig, logger *slog.Logger, reg prometheus.Registerer) *Module {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	m := &Module{
		idx: idx, pages: pages, thumbURL: cfg.ThumbURL, logger: logger,
		slots: make(chan struct{}, cfg.MaxConcurrent), timeout: cfg.Timeout,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "search", Name: "queries_total",
			Help: "Search queries, by document type and outcome (ok, invalid, error).",
		}, []string{"type", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "search", Name: "query_duration_seconds",
			Help:    "Time to run a search query in the index, by driver.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"driver"}),
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.latency)
	}
	return m
}

// Routes mounts the API and the page.
func (m *Module) Routes(mux *http.ServeMux, instance string) {
	mux.HandleFunc("GET /api/v1/search", m.api)
	mux.HandleFunc("GET /search", m.page)
}

// APIHit is one hit as the API returns it.
type APIHit struct {
	Type         DocType   `json:"type"`
	ID           string    `json:"id"`
	Title        string    `json:"title"`
	Snippet      string    `json:"snippet,omitempty"`
	Tags         []string  `json:"tags,omitempty"`
	Creator      string    `json:"creator"`
	CreatorID    string    `json:"creator_id"`
	URL          string    `json:"url"`
	ThumbnailURL string    `json:"thumbnail_url,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	Popularity   int64     `json:"popularity"`
	Score        float64   `json:"score"`
}

// APIResult is the API's answer.
type APIResult struct {
	Query  string   `json:"q"`
	Type   string   `json:"type"`
	Page   int      `json:"page"`
	Size   int      `json:"size"`
	Total  int      `json:"total"`
	More   bool     `json:"more"`
	Hits   []APIHit `json:"hits"`
	TookMS float64  `json:"took_ms"`
}

func apiType(t DocType) string {
	if t == Creator {
		return "creators"
	}
	return "videos"
}

func (m *Module) run(ctx context.Context, q Query) (APIResult, error) {
	kind := apiType(q.Type)
	if err := q.Check(); err != nil {
		m.queries.WithLabelValues(kind, "invalid").Inc()
		return APIResult{}, err
	}
	kind = apiType(q.Type)
	wait, cancel := context.WithTimeout(ctx, time.Second)
	select {
	case m.slots <- struct{}{}:
		cancel()
	case <-wait.Done():
		cancel()
		m.queries.WithLabelValues(kind, "error").Inc()
		return APIResult{}, errs.E(errs.Unavailable, "search is busy; try again in a moment")
	}
	defer func() { <-m.slots }()
	ctx, cancel = context.WithTimeout(ctx, m.timeout)
	defer cancel()
	start := time.Now()
	res, err := m.idx.Search(ctx, q)
	took := time.Since(start)
	if err != nil {
		if errs.KindOf(err) == errs.Invalid {
			m.queries.WithLabelValues(kind, "invalid").Inc()
			return APIResult{}, err
		}
		m.queries.WithLabelValues(kind, "error").Inc()
		m.logger.Warn("search failed", "err", err)
		return APIResult{}, errs.Wrap(errs.Unavailable, err, "search is unavailable right now")
	}
	m.latency.WithLabelValues(m.idx.Driver()).Observe(took.Seconds())
	m.queries.WithLabelValues(kind, "ok").Inc()
	out := APIResult{
		Query: q.Text, Type: kind, Page: q.Page, Size: q.Size, Total: res.Total,
		More: q.Page*q.Size < res.Total && (q.Page+1)*q.Size <= MaxWindow,
		Hits: make([]APIHit, 0, len(res.Hits)), TookMS: float64(took.Microseconds()) / 1000,
	}
	for _, h := range res.Hits {
		ah := APIHit{
			Type: h.Type, ID: strconv.FormatInt(h.ID, 10), Title: h.Title, Snippet: h.Snippet, Tags: h.Tags,
			Creator: h.Creator, CreatorID: strconv.FormatInt(h.CreatorID, 10), CreatedAt: h.CreatedAt,
			Popularity: h.Popularity, Score: h.Score,
		}
		if h.Type == Creator {
			ah.URL = "/search?type=videos&q=" + url.QueryEscape(h.Title)
		} else {
			ah.URL = "/watch/" + ah.ID
		}
		if h.Thumbnail != "" && m.thumbURL != nil {
			ah.ThumbnailURL = m.thumbURL(h.Thumbnail)
		}
		out.Hits = append(out.Hits, ah)
	}
	return out, nil
}

func (m *Module) api(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		m.queries.WithLabelValues(apiType(q.Type), "invalid").Inc()
		httpx.Error(w, r, m.logger, err)
		return
	}
	res, err := m.run(r.Context(), q)
	if err != nil {
		httpx.Error(w, r, m.logger, err)
		return
	}
	httpx.JSON(w, http.StatusOK, res)
}

type pageData struct {
	User   account.Identity
	Q      string
	Type   string
	Result *APIResult
	Error  string
	Next   string // URL of the next page, if any
	Prev   string
}

func (m *Module) page(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	d := pageData{User: account.FromContext(r.Context()), Q: v.Get("q"), Type: "videos"}
	if v.Get("type") == "creators" {
		d.Type = "creators"
	}
	if len(d.Q) > 4*MaxQueryRunes {
		d.Q = d.Q[:4*MaxQueryRunes]
	}
	status := http.StatusOK
	if v.Get("q") != "" {
		q, err := ParseQuery(v)
		if err == nil {
			var res APIResult
			if res, err = m.run(r.Context(), q); err == nil {
				d.Result = &res
				link := func(page int) string {
					u := url.Values{"q": {q.Text}, "type": {res.Type}, "page": {strconv.Itoa(page)}}
					return "/search?" + u.Encode()
				}
				if res.More {
					d.Next = link(q.Page + 1)
				}
				if q.Page > 1 {
					d.Prev = link(q.Page - 1)
				}
			}
		}
		if err != nil {
			status, d.Error = errs.HTTPStatus(err), errs.Message(err)
			if status >= 500 && !errors.Is(err, context.Canceled) {
				m.logger.Warn("search page failed", "err", err)
			}
		}
	}
	m.pages.Render(w, status, "search", d)
}

// AdminRoutes mounts the operator endpoints on the admin listener:
// GET /search/status (JSON Status) and POST /search/reindex (starts a
// rebuild from the tables in the background; 409 while one runs).
func (ix *Indexer) AdminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /search/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		httpx.JSON(w, http.StatusOK, ix.Status(ctx))
	})
	reindex := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ix.mu.Lock()
		busy, runCtx := ix.reindexing, ix.runCtx
		ix.mu.Unlock()
		if runCtx == nil || runCtx.Err() != nil {
			httpx.JSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the indexer is not running"})
			return
		}
		if busy {
			httpx.JSON(w, http.StatusConflict, map[string]string{"error": "a reindex is already running"})
			return
		}
		ix.bg.Go(func() {
			rep, err := ix.Reindex(runCtx)
			if err != nil {
				ix.logger.Warn("search reindex failed", "err", err)
				return
			}
			ix.logger.Info("search index rebuilt", "videos", rep.Videos, "creators", rep.Creators, "took", rep.Took)
		})
		httpx.JSON(w, http.StatusAccepted, map[string]string{"status": "reindex started; see /search/status"})
	})
	mux.Handle("POST /search/reindex", http.NewCrossOriginProtection().Handler(reindex))
}
