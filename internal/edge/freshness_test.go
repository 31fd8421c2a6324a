package edge

import (
	"net/http"
	"testing"
	"time"
)

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name       string
		kv         []string
		lifetime   time.Duration
		initialAge time.Duration
		storable   bool
		revalidate bool
	}{
		{"max-age", []string{"Cache-Control", "max-age=60"}, time.Minute, 0, true, false},
		{"s-maxage wins", []string{"Cache-Control", "max-age=60, s-maxage=120"}, 2 * time.Minute, 0, true, true},
		{"max-age over Expires", []string{"Cache-Control", "max-age=60", "Expires", at(time.Hour)}, time.Minute, 0, true, false},
		{"Expires", []string{"Expires", at(time.Hour)}, time.Hour, 0, true, false},
		{"Expires relative to Date", []string{"Date", at(-time.Hour), "Expires", at(0)}, time.Hour, time.Hour, true, false},
		{"invalid Expires", []string{"Expires", "0", "ETag", `"e"`}, 0, 0, true, false},
		{"past Expires", []string{"Expires", at(-time.Hour)}, 0, 0, false, false},
		{"bad max-age falls back", []string{"Cache-Control", "max-age=soon", "Expires", at(time.Hour)}, time.Hour, 0, true, false},
		{"huge max-age", []string{"Cache-Control", "max-age=99999999999"}, (1 << 31) * time.Second, 0, true, false},
		{"heuristic", []string{"Last-Modified", at(-5 * time.Hour)}, 30 * time.Minute, 0, true, false},
		{"heuristic capped", []string{"Last-Modified", at(-30 * 24 * time.Hour)}, 24 * time.Hour, 0, true, false},
		{"heuristic future", []string{"Last-Modified", at(time.Hour)}, 0, 0, true, false},
		{"no-cache", []string{"Cache-Control", "no-cache, max-age=60", "ETag", `"n"`}, 0, 0, true, true},
		{"no-cache without validator", []string{"Cache-Control", "no-cache"}, 0, 0, false, true},
		{"nothing", nil, 0, 0, false, false},
		{"validator only", []string{"ETag", `"v"`}, 0, 0, true, false},
		{"Age", []string{"Cache-Control", "max-age=60", "Age", "30"}, time.Minute, 30 * time.Second, true, false},
		{"bad Age", []string{"Cache-Control", "max-age=60", "Age", "-3"}, time.Minute, 0, true, false},
		{"Date in the past", []string{"Cache-Control", "max-age=60", "Date", at(-10 * time.Second)}, time.Minute, 10 * time.Second, true, false},
		{"Date in the future", []string{"Cache-Control", "max-age=60", "Date", at(time.Hour)}, time.Minute, 0, true, false},
		{"no-store", []string{"Cache-Control", "no-store, max-age=60"}, time.Minute, 0, false, false},
		{"private", []string{"Cache-Control", `private="Set-Cookie", max-age=60`}, time.Minute, 0, false, false},
		{"Vary Accept-Encoding", []string{"Cache-Control", "max-age=60", "Vary", "Accept-Encoding"}, time.Minute, 0, true, false},
		{"Vary Origin", []string{"Cache-Control", "max-age=60", "Vary", "accept-encoding, origin"}, time.Minute, 0, false, false},
		{"must-revalidate", []string{"Cache-Control", "max-age=60, must-revalidate"}, time.Minute, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for i := 0; i+1 < len(tt.kv); i += 2 {
				h.Set(tt.kv[i], tt.kv[i+1])
			}
			m := newMeta(200, h, now, now)
			if m.lifetime != tt.lifetime || m.initialAge != tt.initialAge {
				t.Errorf("lifetime %v initial age %v, want %v %v", m.lifetime, m.initialAge, tt.lifetime, tt.initialAge)
			}
			if got := m.storable(h); got != tt.storable {
				t.Errorf("storable = %v", got)
			}
			if m.revalidate != tt.revalidate {
				t.Errorf("revalidate = %v", m.revalidate)
			}
		})
	}
}

func TestStorableStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status   int
		cc       string
		lifetime time.Duration
		storable bool
	}{
		{200, "max-age=60", time.Minute, true},
		{404, "max-age=60", 5 * time.Second, true},
		{404, "max-age=2", 2 * time.Second, true},
		{404, "", 0, false},
		{404, "no-cache", 0, false},
		{410, "max-age=60", time.Minute, false},
		{500, "max-age=60", time.Minute, false},
		{206, "max-age=60", time.Minute, false},
	}
	for _, tt := range tests {
		h := http.Header{"Cache-Control": {tt.cc}, "Etag": {`"e"`}}
		m := newMeta(tt.status, h, now, now)
		if m.lifetime != tt.lifetime || m.storable(h) != tt.storable {
			t.Errorf("%d %q: lifetime %v storable %v", tt.status, tt.cc, m.lifetime, m.storable(h))
		}
	}
}

func TestResponseDelayCountsInAge(t *testing.T) {
	sent := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	got := sent.Add(2 * time.Second)
	h := http.Header{"Cache-Control": {"max-age=60"}, "Age": {"10"}, "Date": {sent.Format(http.TimeFormat)}}
	m := newMeta(200, h, sent, got)
	if m.initialAge != 12*time.Second {
		t.Fatalf("initial age %v, want 12s (Age + response delay)", m.initialAge)
	}
	if ttl := m.ttl(got.Add(8 * time.Second)); ttl != 40*time.Second {
		t.Fatalf("ttl %v", ttl)
	}
}

func TestStaleOK(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		cc    string
		later time.Duration
		want  bool
	}{
		{"max-age=60", time.Hour, true},
		{"max-age=60, must-revalidate", 2 * time.Minute, false},
		{"max-age=60, proxy-revalidate", 2 * time.Minute, false},
		{"s-maxage=60", 2 * time.Minute, false},
		{"no-cache", time.Second, false},
		{"max-age=60, stale-if-error=60", 2 * time.Minute, true},
		{"max-age=60, stale-if-error=59", 2 * time.Minute, false},
		{"s-maxage=60, stale-if-error=600", 2 * time.Minute, true},
	}
	for _, tt := range tests {
		m := newMeta(200, http.Header{"Cache-Control": {tt.cc}, "Etag": {`"x"`}}, now, now)
		if got := m.staleOK(now.Add(tt.later)); got != tt.want {
			t.Errorf("%q after %v: staleOK = %v", tt.cc, tt.later, got)
		}
	}
}

func TestRefreshMergesHeaders(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := newMeta(200, http.Header{
		"Cache-Control": {"max-age=60"}, "Etag": {`"a"`}, "Content-Type": {"video/mp4"},
		"Set-Cookie": {"x=y"}, "X-Amz-Request-Id": {"1"},
	}, t0, t0)
	m.size = 42
	if m.header.Get("Set-Cookie") != "" || m.header.Get("X-Amz-Request-Id") != "" {
		t.Fatalf("stored unexpected fields: %v", m.header)
	}
	t1 := t0.Add(time.Hour)
	n := m.refresh(http.Header{"Cache-Control": {"max-age=600"}, "Content-Type": {"text/html"},
		"Date": {t1.Format(http.TimeFormat)}, "Age": {"5"}}, t1, t1)
	if n.lifetime != 10*time.Minute || n.initialAge != 5*time.Second || n.responseTime != t1 || n.size != 42 {
		t.Fatalf("refreshed %+v", n)
	}
	if n.header.Get("Content-Type") != "video/mp4" || n.header.Get("Etag") != `"a"` || n.header.Get("Age") != "" {
		t.Fatalf("refreshed header %v", n.header)
	}
	if m.header.Get("Cache-Control") != "max-age=60" {
		t.Fatal("refresh modified the old meta")
	}
}
