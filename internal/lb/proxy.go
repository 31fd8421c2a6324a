package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// Settings of the transport used for proxied requests. There is no response
// timeout: server-sent events, WebSockets and uploads legitimately stay open
// for a long time, and the gateway bounds requests where it needs to.
const (
	dialTimeout         = 5 * time.Second
	tcpKeepAlive        = 30 * time.Second
	maxIdleConnsPerHost = 256 // the net/http default of 2 forces new connections under load
	idleConnTimeout     = 90 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	copyBufferSize      = 32 << 10
)

// statusClientClosedRequest is the status recorded when the client goes away
// before the backend answers (nginx's 499). The client never sees it.
const statusClientClosedRequest = 499

func newProxyTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never route LB-to-backend traffic through an environment proxy
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}).DialContext,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// Proxy returns an http.Handler that forwards each request to a backend
// chosen by Pick, with keyFunc(r) as the key (keyFunc may be nil). It uses
// httputil.ReverseProxy: request and response bodies are streamed, every
// write is flushed at once so server-sent events are not held back,
// WebSocket upgrades are tunnelled, and X-Forwarded-For, X-Forwarded-Proto
// and X-Forwarded-Host are set. X-Forwarded-* headers sent by the client are
// dropped, not trusted.
//
// If the connection to the chosen backend cannot be made (a dial error such
// as connection refused), the backend is marked down at once. A request
// that can safely be sent again — GET, HEAD or OPTIONS, or any request with
// no body — is then retried once on another backend. Otherwise the client
// gets 502 with a short plain-text reason, as it does for any other failure
// before the backend answered. When no healthy backend is left the answer is
// 503 with Retry-After: 1.
func (b *Balancer) Proxy(keyFunc func(*http.Request) string) http.Handler {
	h := &proxy{b: b, keyFunc: keyFunc}
	h.rp = &httputil.ReverseProxy{
		Rewrite:       h.rewrite,
		Transport:     b.transport,
		FlushInterval: -1,
		BufferPool:    newBufferPool(),
		ErrorLog:      slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
		ErrorHandler:  h.handleError,
	}
	return h
}

// proxy is the handler returned by Balancer.Proxy.
type proxy struct {
	b       *Balancer
	keyFunc func(*http.Request) string
	rp      *httputil.ReverseProxy
}

// attempt is one try at forwarding a request. It travels in the request
// context from ServeHTTP to the ReverseProxy callbacks, which run on the same
// goroutine.
type attempt struct {
	backend  *Backend
	mayRetry bool // the request may go to another backend if this one cannot be reached
	retry    bool // set by handleError: nothing was written, try another backend
}

type attemptKey struct{}

func (h *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var key string
	if h.keyFunc != nil {
		key = h.keyFunc(r)
	}
	var failed []*Backend
	for {
		be, done, err := h.b.Pick(key, failed...)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "lb: no healthy backend", http.StatusServiceUnavailable)
			return
		}
		a := &attempt{backend: be, mayRetry: len(failed) == 0 && replayable(r)}
		h.forward(w, r, a, done)
		if !a.retry {
			return
		}
		failed = append(failed, be)
		h.b.metrics.retries.Inc()
	}
}

// forward runs one attempt. done is called even if the ReverseProxy panics
// (it aborts with http.ErrAbortHandler when a body copy fails midway).
func (h *proxy) forward(w http.ResponseWriter, r *http.Request, a *attempt, done func()) {
	defer done()
	h.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
}

func (h *proxy) rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(attemptKey{}).(*attempt)
	pr.SetURL(a.backend.URL)
	pr.SetXForwarded()
}

// handleError is called by the ReverseProxy when it got no response from the
// backend; nothing has been written to w yet.
func (h *proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	a := r.Context().Value(attemptKey{}).(*attempt)
	if r.Context().Err() != nil {
		// The client went away. That says nothing about the backend and
		// nobody is left to read an answer; just record it.
		w.WriteHeader(statusClientClosedRequest)
		return
	}
	if isDialError(err) {
		h.b.markFailed(a.backend, err)
		if a.mayRetry {
			a.retry = true
			return
		}
		h.b.log.Warn("lb: backend unreachable", "backend", a.backend.name, "method", r.Method, "path", r.URL.Path, "error", err)
		http.Error(w, "lb: backend unreachable", http.StatusBadGateway)
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		// The request body ran over a limit set in front of the proxy
		// (the gateway's): the client's fault, not the backend's.
		http.Error(w, fmt.Sprintf("request body over %d bytes", tooBig.Limit), http.StatusRequestEntityTooLarge)
		return
	}
	h.b.log.Warn("lb: proxy error", "backend", a.backend.name, "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, "lb: backend error", http.StatusBadGateway)
}

// replayable reports whether r may be sent to a second backend after the
// first could not be reached. Retries happen only after a failed dial, so the
// first backend never saw the request and the ReverseProxy has not consumed
// the body (it shields the inbound body from the transport's Close). GET,
// HEAD and OPTIONS are idempotent; any other method qualifies only without a
// body, where sending it again cannot repeat an upload or a payment.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return r.ContentLength == 0
}

// isDialError reports whether err means no connection to the backend could
// be made, as opposed to a failure on an established connection.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// bufferPool recycles the ReverseProxy's copy buffers, which otherwise make
// up most of its allocations.
type bufferPool struct {
	pool sync.Pool
}

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any {
		buf := make([]byte, copyBufferSize)
		return &buf
	}}}
}

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
