package idgen

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestHandlerGood(t *testing.T) {
	g, _ := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	h := g.Handler()
	for _, c := range []struct {
		query string
		shard int
		n     int
	}{{"shard=7", 7, 1}, {"shard=0&n=5", 0, 5}, {"n=1000&shard=4095", 4095, 1000}} {
		code, body, hdr := get(t, h, "GET", "/ids?"+c.query)
		if code != 200 || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", c.query, code, body)
		}
		var out []string
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("%s: %v in %s", c.query, err, body)
		}
		if len(out) != c.n {
			t.Fatalf("%s: %d ids", c.query, len(out))
		}
		var last int64
		for _, s := range out {
			id, err := Parse(s)
			if err != nil || id <= last || Shard(id) != c.shard {
				t.Fatalf("%s: id %q after %d: %v", c.query, s, last, err)
			}
			last = id
		}
	}
}

func TestHandlerBad(t *testing.T) {
	g, _ := startTestGen(t, Config{Leaser: newMemLeaser(1)})
	h := g.Handler()
	for _, c := range []struct{ query, reason string }{
		{"", "missing parameter shard"},
		{"n=3", "missing parameter shard"},
		{"shard=", "shard"},
		{"shard=-1", "not a plain integer"},
		{"shard=4096", "out of range"},
		{"shard=07", "not a plain integer"},
		{"shard=%2B7", "not a plain integer"},
		{"shard=7.0", "not a plain integer"},
		{"shard=abc", "not a plain integer"},
		{"shard=99999999999999999999", "not a plain integer"},
		{"shard=1&n=0", "n: 0 out of range"},
		{"shard=1&n=1001", "n: 1001 out of range"},
		{"shard=1&n=-5", "n:"},
		{"shard=1&shard=2", "given 2 times"},
		{"shard=1&count=5", "unknown parameter"},
		{"shard=1;n=2", "malformed query"},
		{"shard=%zz", "malformed query"},
	} {
		code, body, _ := get(t, h, "GET", "/ids?"+c.query)
		if code != 400 || !strings.Contains(body, c.reason) {
			t.Errorf("%q: %d %s, want 400 with %q", c.query, code, body, c.reason)
		}
	}
	code, _, hdr := get(t, h, "POST", "/ids?shard=1")
	if code != 405 || hdr.Get("Allow") != "GET" {
		t.Errorf("POST: %d, Allow %q", code, hdr.Get("Allow"))
	}
}

func TestHandlerUnavailable(t *testing.T) {
	g, _ := newTestGen(t, Config{Leaser: newMemLeaser(1)}) // not started: no lease
	code, body, hdr := get(t, g.Handler(), "GET", "/ids?shard=1")
	if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "no worker-id lease") {
		t.Fatalf("without a lease: %d %s", code, body)
	}
}

func FuzzIDsQuery(f *testing.F) {
	for _, q := range []string{"shard=1", "shard=4095&n=1000", "n=0", "shard=%41", "shard=1&&n=2", "shard=0x1", "shard=1&n=1e3"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/ids", nil)
		r.URL.RawQuery = q
		shard, n, err := parseIDsQuery(r)
		if err != nil {
			return
		}
		if shard < 0 || shard > MaxShard || n < 1 || n > MaxHTTPBatch {
			t.Fatalf("%q accepted as shard %d, n %d", q, shard, n)
		}
	})
}
