// Package httpx holds the small HTTP helpers Blueprint's servers share:
// JSON responses and errors, strict JSON request decoding, request IDs, and
// a server wrapper with graceful shutdown.
package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// HeaderRequestID carries the request ID from the gateway to the frontends.
const HeaderRequestID = "X-Request-Id"

// NewRequestID returns a random request ID.
func NewRequestID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// JSON writes v as JSON with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Error writes err as a JSON error with the status its kind maps to.
// Errors without a kind are logged and shown as "internal error".
func Error(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	status := errs.HTTPStatus(err)
	if status >= 500 {
		logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(HeaderRequestID), "err", err)
	}
	JSON(w, status, map[string]string{"error": errs.Message(err)})
}

// Decode reads a JSON body of at most limit bytes into v, refusing unknown
// fields and trailing data.
func Decode(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errs.E(errs.Invalid, "request body over %d bytes", limit)
		}
		return errs.E(errs.Invalid, "request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return errs.E(errs.Invalid, "request body has data after the JSON value")
	}
	return nil
}

// Server is an http.Server bound to its listener, with Start/Stop.
type Server struct {
	Name   string
	srv    *http.Server
	ln     net.Listener
	logger *slog.Logger
	done   chan struct{}
}

// Listen binds addr and returns a Server for h; Start serves it.
func Listen(name, addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	return &Server{
		Name: name, ln: ln, logger: logger, done: make(chan struct{}),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
	}, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns http://host:port of the bound address, with a loopback host
// when bound to all interfaces.
func (s *Server) URL() string {
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Start serves in the background.
func (s *Server) Start(ctx context.Context) error {
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("server stopped", "server", s.Name, "err", err)
		}
	}()
	s.logger.Info("listening", "server", s.Name, "addr", s.ln.Addr().String())
	return nil
}

// Stop stops accepting connections and waits for in-flight requests until
// ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.srv.Close()
	}
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	return err
}

// Drain discards and closes a response body so its connection is reused.
func Drain(rc io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(rc, 1<<16))
	rc.Close()
}

// Recorder is a ResponseWriter that remembers the status code and counts
// the bytes written, for access logs and metrics. It passes Flush through
// (server-sent events) and unwraps for http.ResponseController.
type Recorder struct {
	http.ResponseWriter
	Code  int   // status sent; set Code to 200 when creating it
	Bytes int64 // body bytes written
	Wrote bool  // whether anything was sent
}

// WriteHeader implements http.ResponseWriter.
func (r *Recorder) WriteHeader(code int) {
	if !r.Wrote {
		r.Code, r.Wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (r *Recorder) Write(b []byte) (int, error) {
	r.Wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.Bytes += int64(n)
	return n, err
}

// Unwrap returns the underlying ResponseWriter.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush implements http.Flusher.
func (r *Recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
