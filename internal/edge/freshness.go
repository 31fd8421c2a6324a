package edge

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// maxHeuristic caps the heuristic freshness lifetime given to responses that
// carry only a Last-Modified (RFC 9111 §4.2.2).
const maxHeuristic = 24 * time.Hour

// maxNegative caps how long a 404 is kept (negative caching). A 404 is
// stored only if the origin gave it explicit freshness.
const maxNegative = 5 * time.Second

// meta is what the edge knows about a stored response besides its body. A
// meta is never modified once built; revalidation builds a new one. All times
// come from the Edge's clock.
type meta struct {
	status  int         // 200, or 404 for a negatively cached response
	header  http.Header // stored header fields (isStoredField)
	size    int64       // body length in bytes
	modTime time.Time   // parsed Last-Modified, zero if none

	// Freshness per RFC 9111 §4.2: the response is fresh while
	// initialAge + (now - responseTime) < lifetime.
	responseTime time.Time
	initialAge   time.Duration // corrected_initial_age
	lifetime     time.Duration // 0 for no-cache or no freshness information

	// Serving stale when the origin fails (RFC 9111 §4.2.4, RFC 5861).
	revalidate   bool          // must-revalidate, proxy-revalidate, s-maxage or no-cache
	staleIfError time.Duration // window of a stale-if-error directive; < 0 when absent
}

// newMeta computes the metadata of a response with the given status and
// header, received at respTime for a request sent at reqTime. Only the
// fields in isStoredField are kept.
func newMeta(status int, h http.Header, reqTime, respTime time.Time) *meta {
	cc := parseCacheControl(h.Values("Cache-Control"))
	m := &meta{status: status, header: http.Header{}, responseTime: respTime, staleIfError: -1}
	for k, vv := range h {
		if isStoredField(k) {
			m.header[k] = slices.Clone(vv)
		}
	}
	if t, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		m.modTime = t
	}

	// The origin's Date, or our receipt time when it sent none.
	date := respTime
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		date = t
	}
	age, _ := deltaSeconds(strings.TrimSpace(h.Get("Age")))
	apparentAge := max(0, respTime.Sub(date))
	correctedAge := time.Duration(age)*time.Second + respTime.Sub(reqTime)
	m.initialAge = max(apparentAge, correctedAge)

	m.lifetime = lifetime(h, cc, date)
	if status == http.StatusNotFound {
		m.lifetime = min(m.lifetime, maxNegative)
	}
	m.revalidate = cc.has("must-revalidate") || cc.has("proxy-revalidate") ||
		cc.has("s-maxage") || cc.has("no-cache")
	if s, ok := cc.seconds("stale-if-error"); ok {
		m.staleIfError = time.Duration(s) * time.Second
	}
	return m
}

// lifetime returns the freshness lifetime of a 200 response for a shared
// cache (RFC 9111 §4.2.1): s-maxage, then max-age, then Expires - Date, then
// 10% of the time since Last-Modified capped at a day, else zero. no-cache
// means the response is stored but validated before every use.
func lifetime(h http.Header, cc directives, date time.Time) time.Duration {
	if cc.has("no-cache") {
		return 0
	}
	if s, ok := cc.seconds("s-maxage"); ok {
		return time.Duration(s) * time.Second
	}
	if s, ok := cc.seconds("max-age"); ok {
		return time.Duration(s) * time.Second
	}
	if exp := h.Values("Expires"); len(exp) > 0 {
		t, err := http.ParseTime(exp[0])
		if err != nil {
			return 0 // an invalid Expires means "already expired"
		}
		return max(0, t.Sub(date))
	}
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		return min(max(0, date.Sub(lm)/10), maxHeuristic)
	}
	return 0
}

// storable reports whether the response with header h may be stored.
// no-store and private responses are not stored, nor are responses that vary
// on anything but Accept-Encoding (the edge always asks the origin for the
// identity encoding, so that Vary is harmless). A 200 without freshness is
// stored only if it has a validator, since every use revalidates it; a 404
// only with freshness; other statuses never.
func (m *meta) storable(h http.Header) bool {
	cc := parseCacheControl(h.Values("Cache-Control"))
	if cc.has("no-store") || cc.has("private") {
		return false
	}
	if m.status != http.StatusOK && m.status != http.StatusNotFound {
		return false
	}
	for _, v := range h.Values("Vary") {
		for field := range strings.SplitSeq(v, ",") {
			field = strings.TrimSpace(field)
			if field != "" && !strings.EqualFold(field, "Accept-Encoding") {
				return false
			}
		}
	}
	return m.lifetime > 0 || (m.status == http.StatusOK && m.hasValidator())
}

func (m *meta) hasValidator() bool {
	return m.header.Get("ETag") != "" || m.header.Get("Last-Modified") != ""
}

// age is the current age of the response (RFC 9111 §4.2.3).
func (m *meta) age(now time.Time) time.Duration {
	return max(0, m.initialAge+now.Sub(m.responseTime))
}

// ttl is the remaining freshness; zero or negative once stale.
func (m *meta) ttl(now time.Time) time.Duration { return m.lifetime - m.age(now) }

func (m *meta) fresh(now time.Time) bool { return m.ttl(now) > 0 }

// staleOK reports whether the response may be served stale because the
// origin failed. A stale-if-error directive bounds how stale; otherwise any
// staleness is accepted unless the origin asked for revalidation.
func (m *meta) staleOK(now time.Time) bool {
	if m.staleIfError >= 0 {
		return -m.ttl(now) <= m.staleIfError
	}
	return !m.revalidate
}

// refresh returns the metadata after a 304 Not Modified (RFC 9111 §4.3.4):
// the validators and freshness fields the 304 carries replace the stored
// ones, and freshness restarts from the 304's receipt. Content fields stay.
func (m *meta) refresh(h304 http.Header, reqTime, respTime time.Time) *meta {
	h := m.header.Clone()
	for _, k := range []string{"Cache-Control", "Expires", "Etag", "Last-Modified"} { // canonical keys
		if vv := h304.Values(k); len(vv) > 0 {
			h[k] = slices.Clone(vv)
		}
	}
	// Date and Age describe the 304 itself and drive the age calculation.
	for _, k := range []string{"Date", "Age"} {
		if vv := h304.Values(k); len(vv) > 0 {
			h[k] = vv
		}
	}
	n := newMeta(m.status, h, reqTime, respTime)
	n.size = m.size
	return n
}

// isStoredField reports whether a response header field is kept with a
// stored object and sent with it on every hit. Everything else, including
// Set-Cookie and the origin's own CORS fields, is dropped.
func isStoredField(canonicalKey string) bool {
	switch canonicalKey {
	case "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Type", "Etag", "Expires", "Last-Modified", "Vary", "X-Content-Type-Options":
		return true
	}
	return false
}

// isRelayedField reports whether a header field of a response that is passed
// through without being stored is copied to the client.
func isRelayedField(canonicalKey string) bool {
	switch canonicalKey {
	case "Age", "Location", "Retry-After":
		return true
	}
	return isStoredField(canonicalKey)
}
