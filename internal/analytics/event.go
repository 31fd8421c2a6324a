package analytics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
)

// Type is the kind of a player or page event.
type Type uint8

// Event types.
const (
	ViewStart Type = 1 + iota // playback started on a watch page
	Heartbeat                 // position report while playing (also on pause, end, hide)
	Quality                   // the player switched rendition
	Stall                     // playback stalled waiting for data
	PageView                  // a page was shown
)

var typeNames = map[string]Type{"view_start": ViewStart, "heartbeat": Heartbeat, "quality": Quality, "stall": Stall, "page_view": PageView}

// String returns the wire name of t.
func (t Type) String() string {
	for n, v := range typeNames {
		if v == t {
			return n
		}
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Limits on the fields of one event.
const (
	maxRendition  = 32
	maxReferrer   = 512
	maxPath       = 256
	maxSeq        = 1 << 31
	maxStallMs    = 10 * 60 * 1000
	maxBatchIDLen = 64
	minBatchIDLen = 8
)

// Batch is the JSON body of POST /api/v1/analytics/events.
type Batch struct {
	// BatchID is chosen by the client, 8–64 characters of [A-Za-z0-9_-].
	// A retried batch carries the same ID and is stored once.
	BatchID string `json:"batch_id"`
	// Session is the token from POST /api/v1/analytics/sessions; events
	// may carry their own instead.
	Session string    `json:"session,omitempty"`
	Events  []EventIn `json:"events"`
}

// EventIn is one event as a client sends it.
type EventIn struct {
	Type      string   `json:"type"`
	Seq       int64    `json:"seq"`               // 1, 2, 3… per session, in sending order
	Session   string   `json:"session,omitempty"` // overrides the batch's session
	Pos       *float64 `json:"pos,omitempty"`     // playback position, seconds
	Played    float64  `json:"played,omitempty"`  // seconds played since the session's previous event
	Rendition string   `json:"rendition,omitempty"`
	StallMs   int64    `json:"stall_ms,omitempty"`
	Referrer  string   `json:"referrer,omitempty"`
	Path      string   `json:"path,omitempty"`
	T         int64    `json:"t,omitempty"` // client clock, ms; informational only
}

// Event is one validated event, with the fields its session token vouches
// for. It is what the ANALYTICS stream carries and the Parquet files keep.
type Event struct {
	Type      Type
	Session   int64
	Viewer    int64
	Video     int64 // 0 for page views outside a watch page
	Seq       int64
	PosMs     int64 // -1 when the event has no position
	PlayedMs  int64
	StallMs   int64
	Rendition string
	Referrer  string
	Path      string
}

// Record is one ingested batch: the events and the server's receive time.
type Record struct {
	RecvMs int64
	Events []Event
}

func validBatchID(id string) bool {
	if len(id) < minBatchIDLen || len(id) > maxBatchIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// validate checks one event and converts it, given its session's claims.
// maxPlayed and maxPosMs bound client-reported durations.
func (in EventIn) validate(sess sessionClaims, maxPlayedMs, maxPosMs int64) (Event, error) {
	t, ok := typeNames[in.Type]
	if !ok {
		return Event{}, fmt.Errorf("unknown type %q (want view_start, heartbeat, quality, stall or page_view)", in.Type)
	}
	if in.Seq < 1 || in.Seq >= maxSeq {
		return Event{}, fmt.Errorf("seq must be 1..%d", maxSeq-1)
	}
	e := Event{Type: t, Session: sess.Session, Viewer: sess.Viewer, Video: sess.Video, Seq: in.Seq, PosMs: -1}
	if t != PageView && sess.Video == 0 {
		return Event{}, fmt.Errorf("%s needs a session issued for a video", in.Type)
	}
	if in.Pos != nil {
		p := *in.Pos
		if math.IsNaN(p) || p < 0 || p > 1e7 {
			return Event{}, errors.New("pos must be a number of seconds ≥ 0")
		}
		e.PosMs = min(int64(p*1000), maxPosMs)
	}
	if math.IsNaN(in.Played) || in.Played < 0 || in.Played > 1e7 {
		return Event{}, errors.New("played must be a number of seconds ≥ 0")
	}
	e.PlayedMs = min(int64(in.Played*1000), maxPlayedMs)
	if in.StallMs < 0 {
		return Event{}, errors.New("stall_ms must be ≥ 0")
	}
	e.StallMs = min(in.StallMs, maxStallMs)
	if len(in.Rendition) > maxRendition || !printable(in.Rendition) {
		return Event{}, fmt.Errorf("rendition must be at most %d printable bytes", maxRendition)
	}
	if len(in.Referrer) > maxReferrer || !printable(in.Referrer) {
		return Event{}, fmt.Errorf("referrer must be at most %d printable bytes", maxReferrer)
	}
	if len(in.Path) > maxPath || !printable(in.Path) {
		return Event{}, fmt.Errorf("path must be at most %d printable bytes", maxPath)
	}
	switch t {
	case Quality:
		if in.Rendition == "" {
			return Event{}, errors.New("quality needs a rendition")
		}
	case Stall:
		if in.StallMs == 0 {
			return Event{}, errors.New("stall needs stall_ms > 0")
		}
	case PageView:
		if in.Path == "" || !strings.HasPrefix(in.Path, "/") {
			return Event{}, errors.New("page_view needs a path starting with /")
		}
	}
	e.Rendition = in.Rendition
	if t == ViewStart || t == PageView {
		e.Referrer = referrerHost(in.Referrer)
	}
	if t == PageView {
		e.Path = normalizePath(in.Path)
	}
	return e, nil
}

// referrerHost reduces a referrer URL to its host ("" for none or a bad
// URL), which bounds the cardinality of the by-referrer rollup and keeps
// paths and query strings, which may identify people, out of it.
func referrerHost(ref string) string {
	if ref == "" {
		return ""
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	h := strings.ToLower(u.Hostname())
	if len(h) > 253 {
		return ""
	}
	return h
}

// normalizePath drops the query and fragment and folds numeric segments
// (IDs) to {id}: /watch/12345?t=3 becomes /watch/{id}.
func normalizePath(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s == "" {
			continue
		}
		digits := true
		for _, c := range []byte(s) {
			if c < '0' || c > '9' {
				digits = false
				break
			}
		}
		if digits {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// Record encoding on the stream: a version byte, the receive time and the
// events as varints and length-prefixed strings. Compact and several times
// cheaper to encode and decode than JSON at tens of thousands of events per
// second.
const recordVersion = 1

// ErrBadRecord is returned for a stream message that is not a record.
var ErrBadRecord = errors.New("analytics: malformed record")

// AppendRecord appends the encoding of r to b.
func AppendRecord(b []byte, r Record) []byte {
	b = append(b, recordVersion)
	b = binary.AppendVarint(b, r.RecvMs)
	b = binary.AppendUvarint(b, uint64(len(r.Events)))
	for _, e := range r.Events {
		b = append(b, byte(e.Type))
		b = binary.AppendVarint(b, e.Session)
		b = binary.AppendVarint(b, e.Viewer)
		b = binary.AppendVarint(b, e.Video)
		b = binary.AppendVarint(b, e.Seq)
		b = binary.AppendVarint(b, e.PosMs)
		b = binary.AppendVarint(b, e.PlayedMs)
		b = binary.AppendVarint(b, e.StallMs)
		for _, s := range []string{e.Rendition, e.Referrer, e.Path} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

// DecodeRecord decodes a record encoded by AppendRecord.
func DecodeRecord(b []byte) (Record, error) {
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return Record{}, fmt.Errorf("%w: unknown version", ErrBadRecord)
	}
	r := Record{RecvMs: d.varint()}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) { // every event takes at least one byte
		return Record{}, fmt.Errorf("%w: bad event count", ErrBadRecord)
	}
	r.Events = make([]Event, 0, n)
	for range n {
		e := Event{Type: Type(d.byte())}
		e.Session, e.Viewer, e.Video, e.Seq = d.varint(), d.varint(), d.varint(), d.varint()
		e.PosMs, e.PlayedMs, e.StallMs = d.varint(), d.varint(), d.varint()
		e.Rendition, e.Referrer, e.Path = d.str(), d.str(), d.str()
		if d.err != nil {
			return Record{}, d.err
		}
		if e.Type < ViewStart || e.Type > PageView {
			return Record{}, fmt.Errorf("%w: unknown event type %d", ErrBadRecord, e.Type)
		}
		r.Events = append(r.Events, e)
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(d.b))
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", ErrBadRecord)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
