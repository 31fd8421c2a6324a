package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxSharedBody is the largest non-200 origin body (an error page, say)
// held in memory so that every collapsed waiter gets it without its own
// origin request. Larger ones are relayed by the leader only.
const maxSharedBody = 64 << 10

// A flight is one origin fill in progress. The first request for a key
// (the leader) fetches; later requests for the key wait on done and then
// read res. A waiter whose client goes away just stops waiting.
type flight struct {
	done    chan struct{}
	res     fillResult // written before done is closed
	waiters int        // requests that joined after the leader; guarded by flights.mu
}

// flights is the registry of fills in progress, by cache key.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// join returns the flight for key, creating it if there is none; leader
// reports whether the caller created it and must run and finish it.
func (fs *flights) join(key string) (f *flight, leader bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		f.waiters++
		return f, false
	}
	f = &flight{done: make(chan struct{})}
	fs.m[key] = f
	return f, true
}

// finish publishes res to the waiters of f. The fill has already updated
// the store, so a request arriving after f left the registry finds the
// stored object instead of starting another fill.
func (fs *flights) finish(key string, f *flight, res fillResult) {
	f.res = res
	fs.mu.Lock()
	delete(fs.m, key)
	fs.mu.Unlock()
	close(f.done)
}

// waiting returns how many requests wait on the fill of key.
func (fs *flights) waiting(key string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		return f.waiters
	}
	return 0
}

// wait returns when no fill is in flight, or with ctx's error.
func (fs *flights) wait(ctx context.Context) error {
	for {
		var f *flight
		fs.mu.Lock()
		for _, f = range fs.m {
			break
		}
		fs.mu.Unlock()
		if f == nil {
			return nil
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fillOutcome is how a fill ended.
type fillOutcome int

const (
	fillFailed    fillOutcome = iota // origin unreachable, timed out or broke off (or the disk failed)
	fillFresh                        // a fresh copy was stored meanwhile; nothing fetched
	fillStored                       // origin 200 (or a keepable 404), stored
	fillRefreshed                    // origin 304, stale copy refreshed
	fillShared                       // small non-200 response, not stored, handed to every waiter
	fillPass                         // response neither storable nor shareable: waiters fetch on their own
)

// fillResult is what a fill hands its waiters.
type fillResult struct {
	outcome  fillOutcome
	status   int    // the origin's status code; 0 if none
	obj      entry  // fillFresh, fillStored, fillRefreshed
	shared   []byte // fillShared body; status and header describe it
	header   http.Header
	upstream string // the origin's own Cache-Status, if any
}

// call is one origin request whose response headers have arrived. Until
// follow is called, the request is bounded by OriginTimeout as a whole.
type call struct {
	resp     *http.Response
	cancel   context.CancelFunc
	timer    *time.Timer
	reqTime  time.Time // by the Edge's clock, for freshness
	respTime time.Time
}

// follow ends the OriginTimeout bound and ties the request to ctx instead:
// a relayed body may take as long as the client takes to read it, and
// stops when the client goes away.
func (c *call) follow(ctx context.Context) (stop func() bool) {
	c.timer.Stop()
	return context.AfterFunc(ctx, c.cancel)
}

func (c *call) close() {
	c.timer.Stop()
	c.cancel()
	c.resp.Body.Close()
}

// originGet sends a GET for target to the origin, conditional on the
// validators of cond when it is not nil. It never sends Range: the edge
// stores whole objects.
func (e *Edge) originGet(parent context.Context, target string, cond *meta) (*call, error) {
	ctx, cancel := context.WithCancel(parent)
	timer := time.AfterFunc(e.cfg.OriginTimeout, cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, fmt.Errorf("edge: origin request: %w", err)
	}
	req.Header.Set("User-Agent", "blueprint-edge")
	if cond != nil {
		if v := cond.header.Get("Etag"); v != "" {
			req.Header.Set("If-None-Match", v)
		}
		if v := cond.header.Get("Last-Modified"); v != "" {
			req.Header.Set("If-Modified-Since", v)
		}
	}
	e.originFetches.Add(1)
	start, reqTime := time.Now(), e.now()
	resp, err := e.client.Do(req)
	e.m.originSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		timer.Stop()
		cancel()
		e.m.originFetches.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("edge: origin: %w", err)
	}
	e.m.originFetches.WithLabelValues(statusClass(resp.StatusCode)).Inc()
	return &call{resp: resp, cancel: cancel, timer: timer, reqTime: reqTime, respTime: e.now()}, nil
}

// forward answers a request the cache cannot answer alone: a miss, or a
// stale entry (stale != nil) to revalidate. Concurrent requests for the same
// key share one origin fill.
func (e *Edge) forward(w http.ResponseWriter, r *http.Request, key, target string, stale *entry) {
	f, leader := e.flights.join(key)
	if !leader {
		select {
		case <-f.done:
			e.respond(w, r, key, target, f.res, stale, true)
		case <-r.Context().Done():
			// The client left; the fill goes on for the others.
		}
		return
	}
	res, c := e.lead(key, target, f, stale)
	if c == nil {
		e.respond(w, r, key, target, res, stale, false)
		return
	}
	// Not storable: the leader relays the response it holds.
	defer c.close()
	stop := c.follow(r.Context())
	defer stop()
	e.relay(w, r, key, c.resp, stale, res.upstream)
}

// lead runs the fill of flight f and publishes its result to the waiters.
// For fillPass it also returns the origin call, whose response the leader
// relays and must close.
func (e *Edge) lead(key, target string, f *flight, stale *entry) (res fillResult, pass *call) {
	defer func() { e.flights.finish(key, f, res) }()

	// Another fill may have stored the key between our lookup and join.
	if cur, ok := e.store.get(key); ok {
		if cur.meta.fresh(e.now()) {
			return fillResult{outcome: fillFresh, obj: cur}, nil
		}
		stale = &cur
	}
	var cond *meta
	if stale != nil {
		cond = stale.meta
	}

	// The fill belongs to all waiters, not to the leader's client: it runs
	// under the Edge's context, bounded by OriginTimeout.
	c, err := e.originGet(e.base, target, cond)
	if err != nil {
		e.log.Warn("origin fetch failed", "key", key, "err", err)
		return fillResult{outcome: fillFailed}, nil
	}
	resp := c.resp
	res = fillResult{status: resp.StatusCode, upstream: resp.Header.Get("Cache-Status")}
	if resp.StatusCode == http.StatusNotModified && cond != nil {
		c.close()
		res.outcome = fillRefreshed
		res.obj = e.store.refresh(key, *stale, cond.refresh(resp.Header, c.reqTime, c.respTime))
		return res, nil
	}
	// A 200 is stored if it may be; so is a 404 with freshness (negative caching).
	m := newMeta(resp.StatusCode, resp.Header, c.reqTime, c.respTime)
	if resp.StatusCode == http.StatusOK || m.storable(resp.Header) {
		res, pass = e.fillStore(key, c, m, res)
		if res.outcome == fillPass && stale != nil {
			e.store.remove(key, stale.path) // superseded by a version we cannot store
		}
		return res, pass
	}
	if stale != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone) {
		e.store.remove(key, stale.path) // deleted at the origin
	}
	// Some other status: share it with the waiters if it is small.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSharedBody+1))
	if err != nil {
		c.close()
		e.log.Warn("origin body failed", "key", key, "status", resp.StatusCode, "err", err)
		return fillResult{outcome: fillFailed}, nil
	}
	if len(body) > maxSharedBody {
		resp.Body = splice(bytes.NewReader(body), resp.Body)
		res.outcome = fillPass
		return res, c
	}
	c.close()
	res.outcome, res.shared, res.header = fillShared, body, relayedHeader(resp)
	return res, nil
}

// fillStore stores the response of c, described by m, if it may be stored:
// the body streams to a temporary file in CacheDir, and into memory too if it
// is small enough for the memory tier; the file is renamed into place when
// complete. Otherwise the outcome is fillPass.
func (e *Edge) fillStore(key string, c *call, m *meta, res fillResult) (fillResult, *call) {
	resp := c.resp
	if !m.storable(resp.Header) || resp.ContentLength > e.cfg.MaxObjectBytes {
		res.outcome = fillPass
		return res, c
	}
	tmp, err := os.CreateTemp(e.cfg.CacheDir, filePrefix+"*"+tmpSuffix)
	if err != nil {
		e.log.Error("cannot create cache file", "err", err)
		res.outcome = fillPass // still answer, just without caching
		return res, c
	}
	fail := func(err error) (fillResult, *call) {
		tmp.Close()
		os.Remove(tmp.Name())
		c.close()
		e.log.Warn("fill failed", "key", key, "err", err)
		return fillResult{outcome: fillFailed}, nil
	}

	disk := &errWriter{w: tmp}
	mem := &capBuffer{max: e.cfg.MemoryObjectBytes}
	switch {
	case resp.ContentLength > mem.max:
		mem.over = true
	case resp.ContentLength > 0:
		mem.buf.Grow(int(resp.ContentLength))
	}
	n, err := io.Copy(io.MultiWriter(disk, mem), io.LimitReader(resp.Body, e.cfg.MaxObjectBytes+1))
	switch {
	case disk.err != nil:
		return fail(fmt.Errorf("edge: write cache file: %w", disk.err))
	case err != nil:
		return fail(fmt.Errorf("edge: origin body: %w", err))
	case n > e.cfg.MaxObjectBytes:
		// No Content-Length, and too big after all: relay what we have
		// spooled, then the rest.
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return fail(err)
		}
		resp.Body = splice(tmp, resp.Body, closerFunc(func() error {
			tmp.Close()
			return os.Remove(tmp.Name())
		}))
		res.outcome = fillPass
		return res, c
	}
	if err := tmp.Close(); err != nil {
		return fail(fmt.Errorf("edge: write cache file: %w", err))
	}
	path := strings.TrimSuffix(tmp.Name(), tmpSuffix) + objSuffix
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(fmt.Errorf("edge: store cache file: %w", err))
	}
	c.close()
	m.size = n
	var body []byte // nil: disk only
	if !mem.over {
		body = mem.buf.Bytes()
		if cap(body) > len(body)+len(body)/8 || body == nil {
			body = append(make([]byte, 0, len(body)), body...) // exact size, non-nil
		}
	}
	res.outcome = fillStored
	res.obj = e.store.put(key, m, path, body)
	return res, nil
}

// respond answers a request from the result of a fill, run by this request
// (collapsed false) or by another one. stale is the entry this request
// found, if any.
func (e *Edge) respond(w http.ResponseWriter, r *http.Request, key, target string, res fillResult, stale *entry, collapsed bool) {
	fwd := "miss"
	if stale != nil {
		fwd = "stale"
	}
	switch res.outcome {
	case fillFresh:
		if e.serveEntry(w, r, key, res.obj, resultHit, cacheStatus{hit: true}, "") {
			return
		}
	case fillStored:
		cs, kind := cacheStatus{fwd: fwd, stored: true, collapsed: collapsed}, resultMiss
		if stale != nil {
			kind = resultRevalidated
		}
		if stale != nil || res.status != http.StatusOK {
			cs.fwdStatus = res.status
		}
		if e.serveEntry(w, r, key, res.obj, kind, cs, res.upstream) {
			return
		}
	case fillRefreshed:
		cs := cacheStatus{fwd: "stale", fwdStatus: res.status, collapsed: collapsed}
		if e.serveEntry(w, r, key, res.obj, resultRevalidated, cs, res.upstream) {
			return
		}
	case fillShared:
		if res.status >= 500 && e.serveStale(w, r, key, stale, res.status, collapsed) {
			return
		}
		h := w.Header()
		for k, vv := range res.header {
			h[k] = slices.Clone(vv)
		}
		h.Set("Content-Length", strconv.Itoa(len(res.shared)))
		h.Set("Cache-Status", e.statusValue(cacheStatus{fwd: fwd, fwdStatus: res.status, collapsed: collapsed}, res.upstream))
		e.count(resultPass)
		w.WriteHeader(res.status)
		if r.Method != http.MethodHead {
			w.Write(res.shared)
		}
		return
	case fillFailed:
		if !e.serveStale(w, r, key, stale, 0, collapsed) {
			e.fail(w, fwd, collapsed)
		}
		return
	}
	// fillPass, or the stored body vanished before we could serve it: go to
	// the origin on our own, without storing.
	e.passThrough(w, r, key, target, stale)
}

// passThrough fetches target for this request alone and relays the
// response without storing it.
func (e *Edge) passThrough(w http.ResponseWriter, r *http.Request, key, target string, stale *entry) {
	c, err := e.originGet(r.Context(), target, nil)
	if err != nil {
		if r.Context().Err() == nil {
			e.log.Warn("origin fetch failed", "target", target, "err", err)
		}
		if !e.serveStale(w, r, key, stale, 0, false) {
			e.fail(w, "miss", false)
		}
		return
	}
	defer c.close()
	stop := c.follow(r.Context())
	defer stop()
	e.relay(w, r, key, c.resp, stale, c.resp.Header.Get("Cache-Status"))
}

// relay copies an origin response that is not stored to the client. A 5xx
// is replaced by the stale copy when there is one that may be served.
func (e *Edge) relay(w http.ResponseWriter, r *http.Request, key string, resp *http.Response, stale *entry, upstream string) {
	if resp.StatusCode >= 500 && e.serveStale(w, r, key, stale, resp.StatusCode, false) {
		return
	}
	cs := cacheStatus{fwd: "miss"}
	switch {
	case stale != nil:
		cs.fwd = "stale"
	case resp.StatusCode == http.StatusOK && !newMeta(http.StatusOK, resp.Header, e.now(), e.now()).storable(resp.Header):
		cs.fwd = "uri-miss" // the origin forbids storing it
	}
	if resp.StatusCode != http.StatusOK || stale != nil {
		cs.fwdStatus = resp.StatusCode
	}
	h := w.Header()
	for k, vv := range relayedHeader(resp) {
		h[k] = vv
	}
	h.Set("Cache-Status", e.statusValue(cs, upstream))
	e.count(resultPass)
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, resp.Body); err != nil && r.Context().Err() == nil {
		e.log.Debug("relay interrupted", "path", r.URL.Path, "err", err)
	}
}

// relayedHeader returns the header fields of resp that are sent to the
// client when the response is passed through.
func relayedHeader(resp *http.Response) http.Header {
	h := http.Header{}
	for k, vv := range resp.Header {
		if isRelayedField(k) {
			h[k] = slices.Clone(vv)
		}
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	return h
}

// serveStale serves the stale entry, if there is one and its directives
// allow serving it after an origin failure (status is the origin's 5xx, or
// 0 when it did not answer). No Warning field is added (RFC 9111 dropped it).
func (e *Edge) serveStale(w http.ResponseWriter, r *http.Request, key string, stale *entry, status int, collapsed bool) bool {
	if stale == nil || !stale.meta.staleOK(e.now()) {
		return false
	}
	cs := cacheStatus{fwd: "stale", fwdStatus: status, collapsed: collapsed, detail: "origin-error"}
	return e.serveEntry(w, r, key, *stale, resultStale, cs, "")
}

// fail answers 502 because the origin could not be reached.
func (e *Edge) fail(w http.ResponseWriter, fwd string, collapsed bool) {
	w.Header().Set("Cache-Status", cacheStatus{fwd: fwd, collapsed: collapsed, detail: "origin-error"}.format(e.name))
	e.count(resultError)
	http.Error(w, "edge: origin unavailable", http.StatusBadGateway)
}

// capBuffer keeps what is written to it as long as it stays within max
// bytes; past that it lets go of the data (over) and swallows writes.
type capBuffer struct {
	buf  bytes.Buffer
	max  int64
	over bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	switch {
	case b.over:
	case int64(b.buf.Len()+len(p)) > b.max:
		b.over, b.buf = true, bytes.Buffer{}
	default:
		b.buf.Write(p)
	}
	return len(p), nil
}

// errWriter records the first write error of w, so a failed disk write can
// be told apart from a failed origin read.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// splice returns a body that reads prefix and then rest, and on Close
// closes rest and then the extra closers.
func splice(prefix io.Reader, rest io.ReadCloser, closers ...io.Closer) io.ReadCloser {
	return &splicedBody{Reader: io.MultiReader(prefix, rest), closers: append([]io.Closer{rest}, closers...)}
}

type splicedBody struct {
	io.Reader
	closers []io.Closer
}

func (s *splicedBody) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
