package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a Service on a real SQLite database, embedded JetStream broker
// and disk object store in a temp dir, with an in-memory video catalogue.
type env struct {
	t      *testing.T
	s      *Service
	db     *sqlstore.DB
	q      *queue.Queue
	blobs  blob.Store
	clock  *clock
	videos map[int64]VideoInfo
	mux    http.Handler
	reg    *prometheus.Registry
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newEnvDB(t, db, mutate)
}

// newEnvPostgres is newEnv on a throwaway PostgreSQL server.
func newEnvPostgres(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	db, err := sqlstore.OpenPostgres(context.Background(), testenv.StartPostgres(t, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newEnvDB(t, db, mutate)
}

func newEnvDB(t *testing.T, db *sqlstore.DB, mutate func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(dir, "broker")}, logger)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(ctx) })
	q, err := queue.Connect(ctx, "", b, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	blobs, err := blob.NewDisk(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, q: q, blobs: blobs, videos: map[int64]VideoInfo{},
		clock: &clock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry()}
	var mu sync.Mutex
	lookup := func(ctx context.Context, id int64) (VideoInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := e.videos[id]
		if !ok {
			return VideoInfo{}, errs.E(errs.NotFound, "no video with id %d", id)
		}
		return v, nil
	}
	cfg := Config{
		BotUserAgents: []string{"bot", "curl/"}, SessionRate: 1000, SessionBurst: 1000, ViewWindow: 30 * time.Minute,
		FetchBatch: 100, ExportInterval: time.Hour,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, db, q.JetStream(), blobs, lookup, testSecret, logger, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	s.now = e.clock.now
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.s = s
	mux := http.NewServeMux()
	s.Routes(mux, "test")
	// The gateway's signed identity, reduced to a test header.
	e.mux = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, err := strconv.ParseInt(r.Header.Get("X-Test-User"), 10, 64); err == nil {
			r = r.WithContext(account.NewContext(r.Context(), account.Identity{UserID: u, Username: "u" + strconv.FormatInt(u, 10)}))
		}
		mux.ServeHTTP(w, r)
	})
	return e
}

const browserUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"

// do sends a request to the service's routes and returns the recorder.
func (e *env) do(method, path string, body any, hdr map[string]string) *httptest.ResponseRecorder {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("User-Agent", browserUA)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, req)
	return rec
}

// viewer is a browser: its viewer cookie and its view sessions.
type viewer struct {
	e      *env
	cookie string
	user   int64 // logged in when non-zero
	ua     string
}

func (e *env) newViewer() *viewer { return &viewer{e: e, ua: browserUA} }

// session opens a view session (a page load) for video (0: not a watch page).
func (v *viewer) session(video int64) *page {
	v.e.t.Helper()
	hdr := map[string]string{"User-Agent": v.ua}
	if v.cookie != "" {
		hdr["Cookie"] = ViewerCookie + "=" + v.cookie
	}
	if v.user != 0 {
		hdr["X-Test-User"] = strconv.FormatInt(v.user, 10)
	}
	body := SessionRequest{}
	if video != 0 {
		body.VideoID = strconv.FormatInt(video, 10)
	}
	rec := v.e.do("POST", "/api/v1/analytics/sessions", body, hdr)
	if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		v.e.t.Fatalf("session: %d %s", rec.Code, rec.Body)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == ViewerCookie {
			v.cookie = c.Value
		}
	}
	var out SessionResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		v.e.t.Fatal(err)
	}
	return &page{v: v, token: out.Session, tracking: out.Tracking}
}

// page is one page load's view session.
type page struct {
	v        *viewer
	token    string
	tracking bool
	seq      int64
	batches  int
}

// send posts events as one batch and returns the batch for re-sending.
func (p *page) send(evs ...EventIn) Batch {
	p.v.e.t.Helper()
	for i := range evs {
		p.seq++
		evs[i].Seq = p.seq
	}
	p.batches++
	b := Batch{BatchID: fmt.Sprintf("batch-%06d", p.batches), Session: p.token, Events: evs}
	p.post(b, http.StatusAccepted)
	return b
}

func (p *page) post(b Batch, want int) IngestResponse {
	p.v.e.t.Helper()
	rec := p.v.e.do("POST", "/api/v1/analytics/events", b, map[string]string{"User-Agent": p.v.ua})
	if rec.Code != want {
		p.v.e.t.Fatalf("events: got %d, want %d: %s", rec.Code, want, rec.Body)
	}
	var out IngestResponse
	json.Unmarshal(rec.Body.Bytes(), &out)
	return out
}

func pos(s float64) *float64 { return &s }

// rollUp runs the rollup until it has applied everything on the stream.
func (e *env) rollUp() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.RunRollup(ctx) }()
	e.waitRolledUp()
	cancel()
	<-done
}

func (e *env) waitRolledUp() {
	e.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := e.s.PipelineState(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if p.RollupSeq >= p.StreamLastSeq {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("rollup stuck at %d of %d", p.RollupSeq, p.StreamLastSeq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
