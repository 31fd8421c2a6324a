package lb

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newFront serves b.Proxy(keyFunc) on a test server.
func newFront(t *testing.T, b *Balancer, keyFunc func(*http.Request) string) *httptest.Server {
	t.Helper()
	front := httptest.NewServer(b.Proxy(keyFunc))
	t.Cleanup(front.Close)
	return front
}

func TestProxyStreamsBodies(t *testing.T) {
	tbs := newBackends(t, 1)
	b, _ := newBalancer(t, Config{}, tbs)

	t.Run("large body round trip", func(t *testing.T) {
		front := newFront(t, b, nil)
		body := make([]byte, 4<<20)
		rand.Read(body)
		resp, err := http.Post(front.URL+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("status %d, echoed %d bytes equal=%v, want 200 and the same %d bytes", resp.StatusCode, len(got), bytes.Equal(got, body), len(body))
		}
	})

	t.Run("request body is not buffered", func(t *testing.T) {
		// The backend reports the first chunk before the client has sent the
		// second; a proxy that buffered the whole body would never let it.
		firstChunk := make(chan string, 1)
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			br := bufio.NewReader(r.Body)
			line, _ := br.ReadString('\n')
			firstChunk <- line
			rest, _ := io.ReadAll(br)
			fmt.Fprintf(w, "%d", len(line)+len(rest))
		}))
		defer backend.Close()
		b, err := New(Config{}, []string{backend.URL}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		front := newFront(t, b, nil)

		pr, pw := io.Pipe()
		type result struct {
			resp *http.Response
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := http.Post(front.URL+"/upload", "text/plain", pr)
			res <- result{resp, err}
		}()
		io.WriteString(pw, "first\n")
		select {
		case line := <-firstChunk:
			if line != "first\n" {
				t.Fatalf("backend read %q first", line)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the first chunk did not reach the backend before the body was complete")
		}
		io.WriteString(pw, "second\n")
		pw.Close()
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.resp.Body.Close()
		got, _ := io.ReadAll(r.resp.Body)
		if string(got) != "13" {
			t.Fatalf("backend saw %s bytes, want 13", got)
		}
	})

	t.Run("server-sent events are flushed", func(t *testing.T) {
		// The backend sends one event and waits for the client to see it
		// before sending the next.
		seen := make(chan struct{})
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-seen:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "data: two\n\n")
		}))
		defer backend.Close()
		b, err := New(Config{}, []string{backend.URL}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		front := newFront(t, b, nil)

		resp, err := http.Get(front.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		lineCh := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			lineCh <- line
		}()
		select {
		case line := <-lineCh:
			if line != "data: one\n" {
				t.Fatalf("first line %q", line)
			}
		case <-time.After(10 * time.Second):
			close(seen)
			t.Fatal("the first event was held back by the proxy")
		}
		close(seen)
		rest, _ := io.ReadAll(br)
		if string(rest) != "\ndata: two\n\n" {
			t.Fatalf("rest of stream %q", rest)
		}
	})
}

func TestProxySetsForwardedHeaders(t *testing.T) {
	tbs := newBackends(t, 1)
	b, _ := newBalancer(t, Config{}, tbs)
	front := newFront(t, b, nil)

	req, _ := http.NewRequest(http.MethodGet, front.URL+"/echo", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed by the client
	req.Header.Set("X-Forwarded-Host", "evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	frontHost := strings.TrimPrefix(front.URL, "http://")
	want := map[string]string{
		"Got-X-Forwarded-For":   "127.0.0.1",
		"Got-X-Forwarded-Host":  frontHost,
		"Got-X-Forwarded-Proto": "http",
	}
	for h, v := range want {
		if got := resp.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
}

func TestProxyRetriesOnAnotherBackend(t *testing.T) {
	tests := []struct {
		name string
		req  func(url string) *http.Request
	}{
		{"GET", func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, url, nil)
			return r
		}},
		{"POST without body", func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, nil)
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbs := newBackends(t, 2)
			b, reg := newBalancer(t, Config{Strategy: RoundRobin}, tbs)
			front := newFront(t, b, nil)
			// b0 dies, but the balancer has not noticed: no health check ran.
			tbs[0].srv.Close()

			for i := range 6 {
				resp, err := http.DefaultClient.Do(tt.req(front.URL + "/"))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "b1" {
					t.Fatalf("request %d: %d %q, want 200 from b1", i, resp.StatusCode, body)
				}
			}
			// Only the first request hit b0; it was marked down then.
			if got := metricValue(t, reg, "blueprint_lb_retries_total"); got != 1 {
				t.Errorf("retries_total = %v, want 1", got)
			}
			st := status(b, tbs[0])
			if st.Healthy || !strings.Contains(st.LastError, "proxy:") {
				t.Errorf("dead backend status = %+v, want passively marked down", st)
			}
			if got := tbs[1].hits.Load(); got != 6 {
				t.Errorf("b1 served %d requests, want 6", got)
			}
		})
	}
}

func TestProxyPOSTWithBodyIsNotRetried(t *testing.T) {
	tbs := newBackends(t, 2)
	b, reg := newBalancer(t, Config{Strategy: RoundRobin}, tbs)
	front := newFront(t, b, nil)
	tbs[0].srv.Close() // round robin sends the first request here

	resp, err := http.Post(front.URL+"/echo", "text/plain", strings.NewReader("pay 10 EUR"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(string(body), "unreachable") {
		t.Fatalf("502 body %q (%s), want a short plain-text reason", body, ct)
	}
	if got := metricValue(t, reg, "blueprint_lb_retries_total"); got != 0 {
		t.Errorf("retries_total = %v, want 0", got)
	}
	if got := tbs[1].hits.Load(); got != 0 {
		t.Errorf("the POST reached the other backend %d time(s)", got)
	}
	// The dead backend was still marked down, so the next POST goes to b1.
	if healthy(b, tbs[0]) {
		t.Error("dead backend not marked down after a refused connection")
	}
	resp, err = http.Post(front.URL+"/echo", "text/plain", strings.NewReader("again"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "again" {
		t.Fatalf("second POST: %d %q, want 200 from b1", resp.StatusCode, body)
	}
}

func TestProxyAllDown(t *testing.T) {
	tbs := newBackends(t, 2)
	for _, tb := range tbs {
		tb.failing.Store(true)
	}
	b, reg := newBalancer(t, Config{}, tbs)
	start(t, b)
	front := newFront(t, b, nil)

	resp, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("got %d Retry-After=%q, want 503 with Retry-After: 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(string(body), "no healthy backend") {
		t.Fatalf("503 body %q", body)
	}
	if got := metricValue(t, reg, "blueprint_lb_no_backend_total"); got != 1 {
		t.Errorf("no_backend_total = %v, want 1", got)
	}
}

func TestProxyRetryFindsNoBackend(t *testing.T) {
	tbs := newBackends(t, 1)
	b, _ := newBalancer(t, Config{}, tbs)
	front := newFront(t, b, nil)
	tbs[0].srv.Close()

	resp, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("got %d, want 503 with Retry-After: 1 once the only backend is marked down", resp.StatusCode)
	}
}

func TestProxyBackendErrorAfterConnect(t *testing.T) {
	// The backend accepts the connection and closes it without answering.
	// That is not a dial failure: no retry, no passive mark, plain 502.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
	good := newTestBackend(t, "good")
	b, err := New(Config{}, []string{"http://" + ln.Addr().String(), good.srv.URL}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	front := newFront(t, b, nil)

	resp, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "backend error") {
		t.Fatalf("got %d %q, want 502 backend error", resp.StatusCode, body)
	}
	if good.hits.Load() != 0 {
		t.Error("request was retried after the backend had accepted it")
	}
	if !b.Backends()[0].Healthy {
		t.Error("backend marked down for an error after connecting")
	}
}

func TestProxyReleasesInFlight(t *testing.T) {
	tbs := newBackends(t, 2)
	b, _ := newBalancer(t, Config{Strategy: LeastConn}, tbs)
	front := newFront(t, b, nil)
	tbs[0].srv.Close()
	for range 5 {
		get(t, front.URL, "/")
	}
	// The handler releases its pick after the response is written, so the
	// client can see the whole response a moment before the count drops.
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy := ""
		for _, s := range b.Backends() {
			if s.InFlight != 0 {
				busy = fmt.Sprintf("%s: %d in flight after all requests finished", s.Name, s.InFlight)
			}
		}
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(busy)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
