// Package gateway is the API gateway: the public listener every client
// request enters by. In order, it gives each request an ID, logs it,
// refuses cross-origin form and script posts (CSRF, net/http's
// CrossOriginProtection), bounds the body size, authenticates the caller
// (bearer token or session cookie), applies the caller's rate limit (token
// bucket; 429 with Retry-After), signs the caller's identity into headers
// the frontends trust, and forwards the request over HTTP through the load
// balancer to a frontend server.
package gateway

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/lb"
	"github.com/blueprint-media/blueprint/internal/ratelimit"
	"github.com/blueprint-media/blueprint/internal/upload"
)

// SessionCookie is the cookie the web pages authenticate with.
const SessionCookie = "bp_session"

// Config configures the gateway.
type Config struct {
	MaxBodyBytes   int64 // bodies outside the upload endpoint
	MaxUploadBytes int64 // upload PATCH bodies
	TrustedProxy   bool  // take the client address from X-Forwarded-For
	Secret         []byte
}

// Authenticator resolves session tokens.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (account.Identity, error)
}

// Gateway is the API gateway.
type Gateway struct {
	cfg     Config
	auth    Authenticator
	lb      *lb.Balancer
	limiter *ratelimit.Limiter
	logger  *slog.Logger
	csrf    *http.CrossOriginProtection

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	limited  prometheus.Counter
}

// New returns a Gateway; reg may be nil.
func New(cfg Config, auth Authenticator, balancer *lb.Balancer, limiter *ratelimit.Limiter, logger *slog.Logger, reg prometheus.Registerer) *Gateway {
	g := &Gateway{
		cfg: cfg, auth: auth, lb: balancer, limiter: limiter, logger: logger,
		csrf: http.NewCrossOriginProtection(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "gateway", Name: "requests_total", Help: "Requests by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "gateway", Name: "request_duration_seconds", Help: "Time to the end of the response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "gateway", Name: "rate_limited_total", Help: "Requests refused by the rate limiter.",
		}),
	}
	if reg != nil {
		reg.MustRegister(g.requests, g.duration, g.limited)
	}
	return g
}

type ctxKey struct{}

func callerOf(r *http.Request) account.Identity {
	id, _ := r.Context().Value(ctxKey{}).(account.Identity)
	return id
}

// Handler returns the gateway's handler chain.
func (g *Gateway) Handler() http.Handler {
	proxy := g.lb.Proxy(func(r *http.Request) string {
		if id := callerOf(r); id.UserID != 0 {
			return "user:" + strconv.FormatInt(id.UserID, 10)
		}
		return "ip:" + g.clientIP(r)
	})
	var h http.Handler = proxy
	h = g.identify(h)
	h = g.rateLimit(h)
	h = g.authenticate(h)
	h = g.limitBody(h)
	h = g.csrf.Handler(h)
	h = g.observe(h)
	return h
}

// observe assigns the request ID, recovers panics, and writes the access
// log line and metrics.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get(httpx.HeaderRequestID)
		if rid == "" || len(rid) > 64 {
			rid = httpx.NewRequestID()
		}
		r.Header.Set(httpx.HeaderRequestID, rid)
		w.Header().Set(httpx.HeaderRequestID, rid)
		rec := &httpx.Recorder{ResponseWriter: w, Code: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				g.logger.Error("panic", "request_id", rid, "panic", p)
				if !rec.Wrote {
					httpx.JSON(rec, http.StatusInternalServerError, map[string]string{"error": "internal error"})
				}
			}
			d := time.Since(start)
			method := metricMethod(r.Method)
			g.requests.WithLabelValues(method, strconv.Itoa(rec.Code)).Inc()
			g.duration.WithLabelValues(method).Observe(d.Seconds())
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.Code, "bytes", rec.Bytes,
				"duration_ms", float64(d.Microseconds()) / 1000, "request_id", rid, "client", g.clientIP(r),
				"backend", rec.Header().Get("X-Served-By")}
			if id := callerOf(r); id.UserID != 0 {
				attrs = append(attrs, "user", id.UserID)
			}
			g.logger.Info("request", attrs...)
		}()
		next.ServeHTTP(rec, r)
	})
}

// limitBody refuses bodies over the limit: by Content-Length up front, and
// by counting bytes for chunked bodies.
func (g *Gateway) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := g.cfg.MaxBodyBytes
		if strings.HasPrefix(r.URL.Path, upload.BasePath) && (r.Method == http.MethodPatch || r.Method == http.MethodPost) {
			limit = g.cfg.MaxUploadBytes
		}
		if r.ContentLength > limit {
			httpx.JSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request body over " + strconv.FormatInt(limit, 10) + " bytes"})
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate resolves the bearer token or session cookie. A bad bearer
// token is refused; a stale cookie just makes the request anonymous.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id account.Identity
		if authz := r.Header.Get("Authorization"); authz != "" {
			token, ok := strings.CutPrefix(authz, "Bearer ")
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="blueprint"`)
				httpx.JSON(w, http.StatusUnauthorized, map[string]string{"error": "Authorization must be 'Bearer <token>'"})
				return
			}
			var err error
			id, err = g.auth.Authenticate(r.Context(), strings.TrimSpace(token))
			if err != nil {
				if errs.KindOf(err) == errs.Unauthorized {
					// Failed attempts draw on the client address's own
					// bucket, so guessing tokens is rate limited too.
					if !g.allow(w, "authfail:"+g.clientIP(r)) {
						return
					}
					w.Header().Set("WWW-Authenticate", `Bearer realm="blueprint", error="invalid_token"`)
				}
				httpx.Error(w, r, g.logger, err)
				return
			}
		} else if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
			id, err = g.auth.Authenticate(r.Context(), c.Value)
			if err != nil && errs.KindOf(err) != errs.Unauthorized {
				httpx.Error(w, r, g.logger, err)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// rateLimit applies the per-caller token bucket: per user when logged in,
// per client address otherwise.
func (g *Gateway) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := "ip:" + g.clientIP(r)
		if id := callerOf(r); id.UserID != 0 {
			key = "user:" + strconv.FormatInt(id.UserID, 10)
		}
		if g.allow(w, key) {
			next.ServeHTTP(w, r)
		}
	})
}

// allow takes a token from key's bucket, or answers 429 with Retry-After
// and reports false.
func (g *Gateway) allow(w http.ResponseWriter, key string) bool {
	ok, wait := g.limiter.Allow(key)
	if !ok {
		g.limited.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		httpx.JSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate limit exceeded; retry after " + wait.Round(time.Millisecond).String()})
	}
	return ok
}

// identify replaces any client-sent identity headers with the signed
// identity of the authenticated caller.
func (g *Gateway) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		account.SetIdentity(r, callerOf(r), g.cfg.Secret, time.Now())
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) clientIP(r *http.Request) string {
	if g.cfg.TrustedProxy {
		// The last hop is the one our trusted proxy appended; entries to
		// its left come from the client and can say anything.
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			return strings.TrimSpace(xff[strings.LastIndex(xff, ",")+1:])
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// metricMethod bounds the method label: clients choose the method.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
