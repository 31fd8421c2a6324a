package analytics

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	r := Record{RecvMs: 1_790_000_000_123, Events: []Event{
		{Type: ViewStart, Session: 1, Viewer: 2, Video: 3, Seq: 1, PosMs: 0, Referrer: "news.example.com"},
		{Type: Heartbeat, Session: 1, Viewer: 2, Video: 3, Seq: 2, PosMs: 10_400, PlayedMs: 10_000, Rendition: "720p"},
		{Type: Stall, Session: 1 << 62, Viewer: 2, Video: 3, Seq: 3, PosMs: -1, StallMs: 1500},
		{Type: PageView, Session: 9, Viewer: 2, Seq: 1, PosMs: -1, Path: "/watch/{id}"},
	}}
	got, err := DecodeRecord(AppendRecord(nil, r))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
	for _, bad := range [][]byte{nil, {9}, {recordVersion}, AppendRecord(nil, r)[:20], append(AppendRecord(nil, r), 0)} {
		if _, err := DecodeRecord(bad); err == nil {
			t.Errorf("DecodeRecord(%x) accepted", bad)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendRecord(nil, Record{RecvMs: 5, Events: []Event{{Type: Heartbeat, Session: 1, Viewer: 1, Video: 1, Seq: 1, Rendition: "x"}}}))
	f.Add([]byte{recordVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			return
		}
		again, err := DecodeRecord(AppendRecord(nil, r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding a decoded record: %v", err)
		}
	})
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"/watch/123?t=5": "/watch/{id}", "/": "/", "/search?q=cats": "/search", "/u/45/videos#x": "/u/{id}/videos", "/a1/2b": "/a1/2b",
	} {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"https://News.Example.com/path?q=1": "news.example.com", "": "", "javascript:alert(1)": "", "not a url": "", "http://x.test:8080/": "x.test",
	} {
		if got := referrerHost(in); got != want {
			t.Errorf("referrerHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	video := sessionClaims{Session: 1, Viewer: 2, Video: 3}
	page := sessionClaims{Session: 1, Viewer: 2}
	for _, c := range []struct {
		in   EventIn
		c    sessionClaims
		want string // "" = valid
	}{
		{EventIn{Type: "heartbeat", Seq: 1, Pos: pos(3), Played: 2}, video, ""},
		{EventIn{Type: "nope", Seq: 1}, video, "unknown type"},
		{EventIn{Type: "heartbeat", Seq: 0}, video, "seq"},
		{EventIn{Type: "heartbeat", Seq: 1, Pos: pos(-1)}, video, "pos"},
		{EventIn{Type: "heartbeat", Seq: 1, Played: -3}, video, "played"},
		{EventIn{Type: "heartbeat", Seq: 1}, page, "needs a session issued for a video"},
		{EventIn{Type: "quality", Seq: 1}, video, "rendition"},
		{EventIn{Type: "quality", Seq: 1, Rendition: strings.Repeat("x", 40)}, video, "rendition"},
		{EventIn{Type: "quality", Seq: 1, Rendition: "a\x00b"}, video, "rendition"},
		{EventIn{Type: "stall", Seq: 1}, video, "stall_ms"},
		{EventIn{Type: "stall", Seq: 1, StallMs: -1}, video, "stall_ms"},
		{EventIn{Type: "page_view", Seq: 1, Path: "relative"}, page, "path"},
		{EventIn{Type: "page_view", Seq: 1, Path: "/ok"}, page, ""},
		{EventIn{Type: "view_start", Seq: 1, Referrer: strings.Repeat("r", 600)}, video, "referrer"},
	} {
		_, err := c.in.validate(c.c, 25_000, 3_600_000)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.in, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one about %q", c.in, err, c.want)
		}
	}
	e, _ := EventIn{Type: "heartbeat", Seq: 1, Pos: pos(1e6), Played: 999}.validate(video, 25_000, 3_600_000)
	if e.PosMs != 3_600_000 || e.PlayedMs != 25_000 {
		t.Errorf("clamping: pos %d played %d", e.PosMs, e.PlayedMs)
	}
}

// TestIngestRefusals: bad input gets a 4xx with a reason, never a 500.
func TestIngestRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBatchEvents = 3; c.MaxBatchBytes = 2048 })
	e.videos[7] = VideoInfo{CreatorID: 1, Duration: 10, Ready: true}
	e.videos[8] = VideoInfo{CreatorID: 1, Duration: 10}
	p := e.newViewer().session(7)
	ok := func(evs ...EventIn) Batch { return Batch{BatchID: "abcdefgh", Session: p.token, Events: evs} }
	hb := EventIn{Type: "heartbeat", Seq: 1, Pos: pos(1)}
	old := e.s.sign.sessionToken(sessionClaims{Session: 5, Viewer: 6, Video: 7, Issued: e.clock.now().Add(-7 * time.Hour)})
	for name, c := range map[string]struct {
		body any
		code int
		want string
	}{
		"not json":       {"{", 400, "not valid JSON"},
		"unknown field":  {`{"batch_id":"abcdefgh","events":[],"x":1}`, 400, "unknown field"},
		"trailing data":  {`{"batch_id":"abcdefgh","events":[]} {}`, 400, "after the JSON"},
		"short batch id": {Batch{BatchID: "abc", Session: p.token, Events: []EventIn{hb}}, 400, "batch_id"},
		"bad batch id":   {Batch{BatchID: "abc/defgh", Session: p.token, Events: []EventIn{hb}}, 400, "batch_id"},
		"no events":      {ok(), 400, "no events"},
		"too many":       {ok(hb, hb, hb, hb), 400, "at most 3"},
		"too large":      {`{"batch_id":"abcdefgh","events":[` + strings.Repeat(" ", 3000) + `]}`, 413, "over 2048 bytes"},
		"no session":     {Batch{BatchID: "abcdefgh", Events: []EventIn{hb}}, 400, "no session"},
		"forged session": {Batch{BatchID: "abcdefgh", Session: p.token[:len(p.token)-2] + "00", Events: []EventIn{hb}}, 400, "not valid"},
		"expired":        {Batch{BatchID: "abcdefgh", Session: old, Events: []EventIn{hb}}, 400, "expired"},
		"bad event":      {ok(hb, EventIn{Type: "stall", Seq: 2}), 400, "event 1: stall needs"},
		"valid":          {ok(hb), 202, `"accepted": 1`},
	} {
		rec := e.do("POST", "/api/v1/analytics/events", c.body, nil)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d %s, want %d with %q", name, rec.Code, rec.Body, c.code, c.want)
		}
	}
	// Sessions: unknown and unready videos are not found; bad ids invalid.
	for body, code := range map[string]int{`{"video_id":"99"}`: 404, `{"video_id":"8"}`: 404, `{"video_id":"x"}`: 400, `{"nope":1}`: 400, `{}`: 201} {
		if rec := e.do("POST", "/api/v1/analytics/sessions", body, nil); rec.Code != code {
			t.Errorf("session %s: %d %s, want %d", body, rec.Code, rec.Body, code)
		}
	}
	// The creator may open a session on a video still processing.
	if rec := e.do("POST", "/api/v1/analytics/sessions", `{"video_id":"8"}`, map[string]string{"X-Test-User": "1"}); rec.Code != 201 {
		t.Errorf("creator's session on an unready video: %d", rec.Code)
	}
	if rec := e.do("GET", "/api/v1/analytics/creators/me?days=0", nil, map[string]string{"X-Test-User": "1"}); rec.Code != 400 {
		t.Errorf("days=0: %d", rec.Code)
	}
	if rec := e.do("POST", "/api/v1/analytics/events", "", map[string]string{"User-Agent": ""}); rec.Code != 202 || !strings.Contains(rec.Body.String(), "bot") {
		t.Errorf("empty user agent: %d %s", rec.Code, rec.Body)
	}
}

// TestSessionRateLimit: one viewer opening sessions faster than the rate
// gets 429 with Retry-After; its cookie is kept across page loads.
func TestSessionRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionRate = 0.01; c.SessionBurst = 3 })
	v := e.newViewer()
	v.session(0)
	first := v.cookie
	v.session(0)
	v.session(0)
	if v.cookie != first || first == "" {
		t.Fatalf("viewer cookie changed: %q → %q", first, v.cookie)
	}
	rec := e.do("POST", "/api/v1/analytics/sessions", "{}", map[string]string{"Cookie": ViewerCookie + "=" + v.cookie})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("fourth session: %d %v", rec.Code, rec.Header())
	}
	// Another viewer is not limited.
	if rec := e.do("POST", "/api/v1/analytics/sessions", "{}", nil); rec.Code != 201 {
		t.Fatalf("another viewer: %d", rec.Code)
	}
}

func FuzzParseBatch(f *testing.F) {
	s, err := New(Config{}, nil, nil, nil, nil, testSecret, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_790_000_000, 0)
	tok := s.sign.sessionToken(sessionClaims{Session: 1, Viewer: 2, Video: 3, Issued: now})
	f.Add([]byte(`{"batch_id":"abcdefgh","session":"` + tok + `","events":[{"type":"heartbeat","seq":1,"pos":3.5,"played":2}]}`))
	f.Add([]byte(`{"batch_id":"abcdefgh","events":[{"type":"page_view","seq":1,"path":"/x?y","session":"` + tok + `"}]}`))
	f.Add([]byte(`{"batch_id":"abcdefgh","session":"s1.1.2.3.4.00","events":[{"type":"stall","seq":1,"stall_ms":5}]}`))
	f.Add([]byte(`{"batch_id":"abcdefgh","events":[{"type":"heartbeat","seq":1,"pos":-0,"played":1e2,"t":-5,"session":"x"},{"seq":2}]} `))
	f.Add([]byte(`{"batch_id":"abcdefgh","events":[{"Type":"heartbeat","seq":1,"seq":2}],"events":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// The fast parser agrees with encoding/json whenever it accepts.
		if fast, ok := fastBatch(body); ok {
			slow, err := decodeBatch(body)
			if err != nil {
				t.Fatalf("fast parser accepted what encoding/json refuses (%v): %q", err, body)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast parser disagrees:\n fast %+v\n json %+v\n body %q", fast, slow, body)
			}
		}
		rec, id, err := s.parseBatch(body, now)
		if err != nil {
			return
		}
		if !strings.HasPrefix(id, "ab-") || len(rec.Events) == 0 {
			t.Fatalf("accepted batch without id or events: %q %+v", id, rec)
		}
		if _, err := DecodeRecord(AppendRecord(nil, rec)); err != nil {
			t.Fatalf("accepted batch does not encode: %v", err)
		}
	})
}
