package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for zero Config fields.
const (
	DefaultName              = "blueprint-edge"
	DefaultMemoryBytes       = 64 << 20
	DefaultDiskBytes         = 1 << 30
	DefaultMaxObjectBytes    = 256 << 20
	DefaultMemoryObjectBytes = 8 << 20
	DefaultOriginTimeout     = 30 * time.Second
	DefaultAllowOrigin       = "*"
)

// Config configures an Edge. Zero fields take the defaults above. The
// config keys in messages (edge.*) are the names the application maps.
type Config struct {
	Name              string        // Cache-Status cache identifier; default "blueprint-edge"
	Origin            string        // base URL of the origin; a request for path P (+ raw query) is fetched from Origin+P
	CacheDir          string        // directory for the disk tier (created if missing), owned by this Edge
	MemoryBytes       int64         // memory tier capacity in bytes; default 64 MiB
	DiskBytes         int64         // disk tier capacity in bytes; default 1 GiB
	MaxObjectBytes    int64         // largest object cached at all (default 256 MiB); larger responses are passed through
	MemoryObjectBytes int64         // largest object kept in the memory tier (default 8 MiB)
	OriginTimeout     time.Duration // per origin request; default 30s
	AllowOrigin       string        // Access-Control-Allow-Origin on responses; default "*"
}

// Edge is an HTTP caching reverse proxy for one origin. See the package
// documentation for its contract. An Edge is safe for concurrent use.
type Edge struct {
	cfg     Config
	origin  string // cfg.Origin without a trailing slash
	name    string // cfg.Name serialised for Cache-Status
	log     *slog.Logger
	client  *http.Client
	store   *store
	flights flights
	m       *metrics
	now     func() time.Time // clock for freshness; tests replace it

	// base is the parent context of fills, which outlive the request that
	// started them; Stop cancels it when its deadline passes.
	base   context.Context
	cancel context.CancelFunc

	results       [numResults]atomic.Int64
	originFetches atomic.Int64
}

// Stats is a snapshot of an Edge's counters and cache occupancy.
type Stats struct {
	Hits          int64 // fresh copy served without contacting the origin
	Misses        int64 // filled from the origin, stored and served
	Stale         int64 // stale copy served because the origin failed
	Revalidated   int64 // stale copy revalidated (304) or replaced (200) by the origin
	Passes        int64 // origin response relayed without storing it
	Errors        int64 // 502 answered because the origin was unreachable
	OriginFetches int64 // requests sent to the origin
	MemoryBytes   int64 // bytes in the memory tier
	MemoryObjects int64 // objects in the memory tier
	DiskBytes     int64 // bytes in the disk tier, counted in 4 KiB blocks
	Objects       int64 // objects stored (all are on disk)
}

// New validates cfg, creates CacheDir and returns an Edge. It registers the
// Edge's metrics on reg unless reg is nil. It starts no goroutines. logger
// may be nil.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Edge, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("edge: edge.cache_dir: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := newMetrics()
	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, err
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil               // the edge talks to its origin directly
	tr.DisableCompression = true // store the identity encoding, byte for byte
	tr.MaxIdleConnsPerHost = 64
	base, cancel := context.WithCancel(context.Background())
	return &Edge{
		cfg:    cfg,
		origin: strings.TrimSuffix(cfg.Origin, "/"),
		name:   sfItem(cfg.Name),
		log:    logger.With("component", "edge"),
		client: &http.Client{
			Transport: tr,
			// Redirects are the client's business: relay them.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		store:   newStore(cfg.MemoryBytes, cfg.DiskBytes, m),
		flights: flights{m: map[string]*flight{}},
		m:       m,
		now:     time.Now,
		base:    base,
		cancel:  cancel,
	}, nil
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	bad := func(key, format string, args ...any) (Config, error) {
		return c, fmt.Errorf("edge: invalid %s: "+format, append([]any{key}, args...)...)
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if !isPrintableASCII(c.Name) {
		return bad("edge.name", "%q must be printable ASCII", c.Name)
	}
	u, err := url.Parse(c.Origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return bad("edge.origin", "%q must be an http or https URL without query, fragment or user info", c.Origin)
	}
	if c.CacheDir == "" {
		return bad("edge.cache_dir", "a directory is required")
	}
	if c.AllowOrigin == "" {
		c.AllowOrigin = DefaultAllowOrigin
	}
	if !isPrintableASCII(c.AllowOrigin) {
		return bad("edge.allow_origin", "%q must be printable ASCII", c.AllowOrigin)
	}
	if c.OriginTimeout < 0 {
		return bad("edge.origin_timeout", "%v is negative", c.OriginTimeout)
	}
	if c.OriginTimeout == 0 {
		c.OriginTimeout = DefaultOriginTimeout
	}
	sizes := []struct {
		key string
		v   *int64
		def int64
	}{
		{"edge.memory_bytes", &c.MemoryBytes, DefaultMemoryBytes},
		{"edge.disk_bytes", &c.DiskBytes, DefaultDiskBytes},
		{"edge.max_object_bytes", &c.MaxObjectBytes, DefaultMaxObjectBytes},
		{"edge.memory_object_bytes", &c.MemoryObjectBytes, DefaultMemoryObjectBytes},
	}
	explicit := map[string]bool{}
	for _, s := range sizes {
		if *s.v < 0 {
			return bad(s.key, "%d is negative", *s.v)
		}
		explicit[s.key] = *s.v != 0
		if *s.v == 0 {
			*s.v = s.def
		}
	}
	// An object must fit its tier. Defaults shrink to fit a small tier; an
	// explicit contradiction is an error.
	if c.MaxObjectBytes > c.DiskBytes {
		if explicit["edge.max_object_bytes"] {
			return bad("edge.max_object_bytes", "%d exceeds edge.disk_bytes %d", c.MaxObjectBytes, c.DiskBytes)
		}
		c.MaxObjectBytes = c.DiskBytes
	}
	if c.MemoryObjectBytes > c.MemoryBytes {
		if explicit["edge.memory_object_bytes"] {
			return bad("edge.memory_object_bytes", "%d exceeds edge.memory_bytes %d", c.MemoryObjectBytes, c.MemoryBytes)
		}
		c.MemoryObjectBytes = c.MemoryBytes
	}
	return c, nil
}

// Start prepares the disk tier: objects a previous run left in CacheDir are
// deleted, since their metadata was not kept. It starts no goroutines.
func (e *Edge) Start(ctx context.Context) error {
	if err := cleanDir(e.cfg.CacheDir); err != nil {
		return fmt.Errorf("edge: clean edge.cache_dir: %w", err)
	}
	return nil
}

// Stop waits for in-flight origin fills to finish. If ctx ends first, the
// remaining fills are cancelled (their waiters get 502 or stale) and Stop
// returns ctx's error. Call it after the HTTP server has stopped accepting
// requests.
func (e *Edge) Stop(ctx context.Context) error {
	err := e.flights.wait(ctx)
	if err != nil {
		e.cancel()
	}
	e.client.CloseIdleConnections()
	return err
}

// Stats returns a snapshot of the Edge's counters.
func (e *Edge) Stats() Stats {
	memBytes, memObjects, diskBytes, diskObjects := e.store.usage()
	return Stats{
		Hits:          e.results[resultHit].Load(),
		Misses:        e.results[resultMiss].Load(),
		Stale:         e.results[resultStale].Load(),
		Revalidated:   e.results[resultRevalidated].Load(),
		Passes:        e.results[resultPass].Load(),
		Errors:        e.results[resultError].Load(),
		OriginFetches: e.originFetches.Load(),
		MemoryBytes:   memBytes,
		MemoryObjects: memObjects,
		DiskBytes:     diskBytes,
		Objects:       diskObjects,
	}
}

func (e *Edge) count(r result) {
	e.results[r].Add(1)
	e.m.requests.WithLabelValues(r.String()).Inc()
}

const allowedMethods = "GET, HEAD, OPTIONS"

// ServeHTTP answers GET and HEAD from the cache or the origin, OPTIONS as a
// CORS preflight, and anything else with 405.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", e.cfg.AllowOrigin)
	h.Set("Access-Control-Expose-Headers", "Cache-Status, Age, Content-Length, Content-Range")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Allow", allowedMethods)
		h.Set("Access-Control-Allow-Methods", allowedMethods)
		h.Set("Access-Control-Allow-Headers", "Range, If-Range, If-None-Match, If-Modified-Since")
		h.Set("Access-Control-Max-Age", "86400")
		h.Set("Cache-Status", cacheStatus{detail: "preflight"}.format(e.name))
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", allowedMethods)
		h.Set("Cache-Status", cacheStatus{detail: "method-not-allowed"}.format(e.name))
		http.Error(w, "edge: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		h.Set("Cache-Status", cacheStatus{detail: "bad-request"}.format(e.name))
		http.Error(w, "edge: request target must be an absolute path", http.StatusBadRequest)
		return
	}
	key := path + "?" + r.URL.RawQuery
	target := e.origin + path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}

	cw := &countingWriter{ResponseWriter: w}
	defer func() { e.m.servedBytes.Add(float64(cw.n)) }()

	c, ok := e.store.get(key)
	if ok && c.meta.fresh(e.now()) {
		if e.serveEntry(cw, r, key, c, resultHit, cacheStatus{hit: true}, "") {
			return
		}
		ok = false // the body file vanished; fetch again
	}
	var stale *entry
	if ok {
		stale = &c
	}
	e.forward(cw, r, key, target, stale)
}

// serveEntry answers from a stored object, with Range and conditional
// request support from http.ServeContent against the stored ETag and
// Last-Modified. A disk-only object small enough for the memory tier is
// promoted. It returns false, having written nothing, if the body file is
// gone (evicted or replaced since c was read); the stale entry is then
// removed.
func (e *Edge) serveEntry(w http.ResponseWriter, r *http.Request, key string, c entry, res result, cs cacheStatus, upstream string) bool {
	var body io.ReadSeeker
	if c.inMem {
		body = bytes.NewReader(c.body)
	} else {
		f, err := os.Open(c.path)
		if err != nil {
			e.log.Debug("stored body vanished", "key", key, "err", err)
			e.store.remove(key, c.path)
			return false
		}
		defer f.Close()
		body = f
		if c.meta.size <= e.cfg.MemoryObjectBytes {
			b := make([]byte, c.meta.size)
			if _, err := io.ReadFull(f, b); err == nil {
				e.store.promote(key, c.path, b)
				body = bytes.NewReader(b)
			} else if _, err := f.Seek(0, io.SeekStart); err != nil {
				return false
			}
		}
	}

	now := e.now()
	h := w.Header()
	for k, vv := range c.meta.header {
		h[k] = slices.Clone(vv)
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // the origin sent none: do not let ServeContent sniff one
	}
	h.Set("Age", strconv.FormatInt(int64(c.meta.age(now)/time.Second), 10))
	if cs.hit {
		cs.ttl, cs.hasTTL = c.meta.ttl(now), true
	}
	h.Set("Cache-Status", e.statusValue(cs, upstream))
	e.count(res)
	if c.meta.status != http.StatusOK {
		// A negatively cached 404: no ranges, no validation.
		h.Set("Content-Length", strconv.FormatInt(c.meta.size, 10))
		w.WriteHeader(c.meta.status)
		if r.Method != http.MethodHead {
			io.Copy(w, body)
		}
		return true
	}
	http.ServeContent(w, r, "", c.meta.modTime, body)
	return true
}

// statusValue is the Cache-Status field value: the upstream's members, if
// the response came through the origin and it sent any, then ours.
func (e *Edge) statusValue(cs cacheStatus, upstream string) string {
	own := cs.format(e.name)
	if upstream == "" {
		return own
	}
	return upstream + ", " + own
}

// countingWriter counts body bytes written to the client. It keeps
// io.ReaderFrom so that ServeContent of a file still uses sendfile.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.ResponseWriter, r)
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
