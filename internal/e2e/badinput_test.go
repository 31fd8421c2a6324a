package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
)

// pngHeader returns the first bytes of a PNG of the given size: signature
// and IHDR, then a truncated IDAT. A decoder reading the header sees a huge
// image; no pixels exist.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.Write([]byte("\x89PNG\r\n\x1a\n"))
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x00})
	return b.Bytes()
}

// TestBadInput: every bad input gets a clear 4xx or a failed status with a
// reason, and the platform keeps working for everybody.
func TestBadInput(t *testing.T) {
	p := startPlatform(t, func(c *config.Config) { c.Upload.MaxBytes = 8 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := p.user(t, "mallory")
	dir := clipDir(t)

	good := filepath.Join(dir, "good.mp4")
	makeClip(t, good, 640, 360, 2, false)
	full, _ := os.ReadFile(good)
	files := map[string][]byte{
		"notes.txt":     []byte(strings.Repeat("this is not a video\n", 100)),
		"truncated.mp4": full[:len(full)/2],
		"bomb.png":      pngHeader(30000, 30000),
	}
	wantReason := map[string]string{
		"notes.txt":     "not a media file",
		"truncated.mp4": "",
		"bomb.png":      "pixel",
	}
	ids := map[string]string{}
	for name, data := range files {
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o644)
		res, err := c.Upload(ctx, path, client.UploadOptions{})
		if err != nil {
			t.Fatalf("%s: upload: %v", name, err)
		}
		ids[name] = res.VideoID
	}
	for name, id := range ids {
		v, err := c.WaitReady(ctx, id, 200*time.Millisecond)
		if err == nil || v.Status != "failed" || v.Error == "" {
			t.Errorf("%s: status %q error %q (%v); want failed with a reason", name, v.Status, v.Error, err)
			continue
		}
		if !strings.Contains(v.Error, wantReason[name]) {
			t.Errorf("%s: reason %q does not mention %q", name, v.Error, wantReason[name])
		}
		t.Logf("%s → failed: %s", name, v.Error)
	}

	expectStatus := func(name string, err error, status int) {
		t.Helper()
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != status {
			t.Errorf("%s: err = %v, want status %d", name, err, status)
			return
		}
		if apiErr.Message == "" {
			t.Errorf("%s: %d without a reason", name, status)
		}
	}
	// A 0-byte upload is refused at creation.
	empty := filepath.Join(dir, "empty.mp4")
	os.WriteFile(empty, nil, 0o644)
	_, err := c.Upload(ctx, empty, client.UploadOptions{})
	expectStatus("empty upload", err, http.StatusBadRequest)
	// Over the size limit: refused before any byte flows.
	_, err = c.UploadReader(ctx, bytes.NewReader(nil), 9<<20, "big.mp4", client.UploadOptions{})
	expectStatus("over limit", err, http.StatusRequestEntityTooLarge)
	// Unknown and malformed IDs.
	_, err = c.Video(ctx, "123456789")
	expectStatus("unknown id", err, http.StatusNotFound)
	_, err = c.Video(ctx, "not-an-id")
	expectStatus("malformed id", err, http.StatusNotFound)
	// A bad token.
	bad := client.New(p.urls.Gateway)
	bad.Token = "bp_not-a-real-token"
	_, err = bad.Me(ctx)
	expectStatus("bad token", err, http.StatusUnauthorized)
	bad.Token = ""
	_, err = bad.Me(ctx)
	expectStatus("no token", err, http.StatusUnauthorized)
	// Anonymous uploads are refused.
	_, err = bad.Upload(ctx, good, client.UploadOptions{})
	expectStatus("anonymous upload", err, http.StatusUnauthorized)
	// Malformed JSON and oversized bodies.
	err = c.Do(ctx, http.MethodPost, "/api/v1/users", map[string]any{"username": 5}, nil)
	expectStatus("bad json", err, http.StatusBadRequest)
	err = c.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": strings.Repeat("x", 2<<20)}, nil)
	expectStatus("huge body", err, http.StatusRequestEntityTooLarge)

	// Malformed tus headers.
	rawTus := func(method, path string, hdr map[string]string) int {
		req, _ := http.NewRequestWithContext(ctx, method, p.urls.Gateway+path, nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, tc := range map[string]struct {
		method, path string
		hdr          map[string]string
	}{
		"length not a number": {"POST", "/api/v1/uploads/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "abc", "Upload-Metadata": client.EncodeMetadata(map[string]string{"filename": "a.mp4"})}},
		"negative length":     {"POST", "/api/v1/uploads/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "-5"}},
		"bad metadata":        {"POST", "/api/v1/uploads/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": "filename !!!notbase64"}},
		"no filename":         {"POST", "/api/v1/uploads/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "10"}},
		"wrong tus version":   {"POST", "/api/v1/uploads/", map[string]string{"Tus-Resumable": "0.9", "Upload-Length": "10"}},
		"deferred length":     {"POST", "/api/v1/uploads/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1", "Upload-Metadata": client.EncodeMetadata(map[string]string{"filename": "a.mp4"})}},
		"patch unknown":       {"PATCH", "/api/v1/uploads/424242", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}},
	} {
		if code := rawTus(tc.method, tc.path, tc.hdr); code < 400 || code >= 500 {
			t.Errorf("%s: status %d, want 4xx", name, code)
		}
	}

	// Somebody else's upload is invisible.
	other := p.user(t, "victim")
	var created string
	_, err = other.UploadReader(ctx, &failAfter{r: bytes.NewReader(full), n: 10}, int64(len(full)), "v.mp4", client.UploadOptions{Retries: -1, OnCreate: func(u string) { created = u }})
	if err == nil || created == "" {
		t.Fatalf("setup: %v %q", err, created)
	}
	id := created[strings.LastIndex(created, "/")+1:]
	// Another user's failed item (and its error text) is not visible.
	_, err = other.Video(ctx, ids["notes.txt"])
	expectStatus("someone else's failed video", err, http.StatusNotFound)
	if code := rawTus("HEAD", "/api/v1/uploads/"+id, map[string]string{"Tus-Resumable": "1.0.0"}); code != http.StatusNotFound {
		t.Errorf("HEAD on another user's upload: %d, want 404", code)
	}

	// After all that, a good upload still works.
	res, err := c.Upload(ctx, good, client.UploadOptions{Title: "still fine"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitReady(ctx, res.VideoID, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
