package origin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/blob"
)

func TestOrigin(t *testing.T) {
	store, err := blob.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store.Put(ctx, "videos/1/hls/master.m3u8", strings.NewReader("#EXTM3U\n"))
	store.Put(ctx, "videos/1/hls/v0/seg_00000.m4s", strings.NewReader("0123456789"))
	store.Put(ctx, "sources/1", strings.NewReader("private upload"))
	srv := httptest.NewServer(Handler(store))
	defer srv.Close()

	get := func(path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	r := get("/media/videos/1/hls/master.m3u8", nil)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/vnd.apple.mpegurl" || r.Header.Get("Cache-Control") != "public, max-age=60" || r.Header.Get("ETag") == "" {
		t.Fatalf("playlist: %d %v", r.StatusCode, r.Header)
	}
	r = get("/media/videos/1/hls/v0/seg_00000.m4s", map[string]string{"Range": "bytes=2-4"})
	if r.StatusCode != 206 || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") || r.Header.Get("Content-Range") != "bytes 2-4/10" {
		t.Fatalf("segment range: %d %v", r.StatusCode, r.Header)
	}
	etag := get("/media/videos/1/hls/v0/seg_00000.m4s", nil).Header.Get("ETag")
	if r := get("/media/videos/1/hls/v0/seg_00000.m4s", map[string]string{"If-None-Match": etag}); r.StatusCode != 304 {
		t.Fatalf("conditional: %d", r.StatusCode)
	}
	for _, p := range []string{"/media/sources/1", "/media/videos/2/x", "/media/videos/../sources/1", "/media/"} {
		if r := get(p, nil); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}
}
