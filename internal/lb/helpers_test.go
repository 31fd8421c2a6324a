package lb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testBackend is a real HTTP server standing in for a frontend server.
//
//	/healthz  200, or 503 while failing is set
//	/slow     blocks until release is closed (or the client leaves)
//	/echo     copies the request body back and reports X-Forwarded-* headers
//	anything else answers its name
//
// Every response carries an X-Backend header with the name.
type testBackend struct {
	name    string
	srv     *httptest.Server
	failing atomic.Bool

	okChecks     atomic.Int64
	failedChecks atomic.Int64
	hits         atomic.Int64 // requests other than /healthz

	release chan struct{}
}

func newTestBackend(t *testing.T, name string) *testBackend {
	t.Helper()
	tb := &testBackend{name: name, release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if tb.failing.Load() {
			tb.failedChecks.Add(1)
			http.Error(w, "failing", http.StatusServiceUnavailable)
			return
		}
		tb.okChecks.Add(1)
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-tb.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, tb.name)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			w.Header().Set("Got-"+h, strings.Join(r.Header.Values(h), ","))
		}
		// Read all, then answer: HTTP/1 servers are not full duplex, and
		// copying while reading races the server closing the body.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(body)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, tb.name)
	})
	tb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			tb.hits.Add(1)
		}
		w.Header().Set("X-Backend", tb.name)
		mux.ServeHTTP(w, r)
	}))
	// Cleanups run last-in first-out: release slow requests, then close.
	t.Cleanup(tb.srv.Close)
	t.Cleanup(tb.unblock)
	return tb
}

// unblock lets every /slow request finish. It may be called more than once.
func (tb *testBackend) unblock() {
	select {
	case <-tb.release:
	default:
		close(tb.release)
	}
}

// newBackends starts n test backends named b0, b1, ...
func newBackends(t *testing.T, n int) []*testBackend {
	t.Helper()
	out := make([]*testBackend, n)
	for i := range out {
		out[i] = newTestBackend(t, fmt.Sprint("b", i))
	}
	return out
}

func urls(tbs []*testBackend) []string {
	out := make([]string, len(tbs))
	for i, tb := range tbs {
		out[i] = tb.srv.URL
	}
	return out
}

// newBalancer builds a Balancer over tbs, registered on a fresh registry, and
// stops it when the test ends. It does not start it.
func newBalancer(t *testing.T, cfg Config, tbs []*testBackend) (*Balancer, *prometheus.Registry) {
	t.Helper()
	return newBalancerLog(t, cfg, tbs, slog.New(slog.DiscardHandler))
}

func newBalancerLog(t *testing.T, cfg Config, tbs []*testBackend, logger *slog.Logger) (*Balancer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	b, err := New(cfg, urls(tbs), logger, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return b, reg
}

func start(t *testing.T, b *Balancer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline. Tests wait for asynchronous state this way, never with a fixed
// sleep.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// status returns the Status of the backend named name (host:port of tb).
func status(b *Balancer, tb *testBackend) Status {
	for _, s := range b.Backends() {
		if s.URL == tb.srv.URL {
			return s
		}
	}
	panic("no status for " + tb.srv.URL)
}

func healthy(b *Balancer, tb *testBackend) bool { return status(b, tb).Healthy }

// nameOf maps a picked Backend back to its test backend's name.
func nameOf(tbs []*testBackend, be *Backend) string {
	for _, tb := range tbs {
		if tb.srv.URL == be.URL.String() {
			return tb.name
		}
	}
	return "?"
}

// get sends a GET through the handler h serves at base and returns the status,
// the X-Backend header and the body.
func get(t *testing.T, base, path string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(body)
}

// metricValue returns the value of the counter or gauge name with exactly
// the given labels, or -1 if there is none.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for capturing logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
