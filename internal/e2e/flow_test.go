package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
)

// TestUploadTranscodePlay is the walking skeleton: sign up → tus upload cut
// off halfway and resumed → processing → ready → master playlist through
// the edge with ≥ 3 variants → a segment fetched twice, the second a hit.
func TestUploadTranscodePlay(t *testing.T) {
	p := startPlatform(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := p.user(t, "alice")

	clip := filepath.Join(clipDir(t), "clip.mp4")
	makeClip(t, clip, 1280, 720, 4, true)
	f, err := os.Open(clip)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	size := fi.Size()

	// First attempt: the connection drops halfway through the body.
	var uploadURL string
	_, err = c.UploadReader(ctx, &failAfter{r: f, n: size / 2}, size, "clip.mp4", client.UploadOptions{
		Title: "Walking skeleton", ChunkSize: size, Retries: -1,
		OnCreate: func(u string) { uploadURL = u },
	})
	if err == nil {
		t.Fatal("the interrupted upload reported success")
	}
	if uploadURL == "" {
		t.Fatal("upload was never created")
	}
	id := uploadURL[strings.LastIndex(uploadURL, "/")+1:]
	var st struct {
		Offset  int64  `json:"offset"`
		State   string `json:"state"`
		VideoID string `json:"video_id"`
	}
	// The server keeps what arrived before the drop; it may take a moment
	// for the aborted request to finish on the server side.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := c.Do(ctx, http.MethodGet, "/api/v1/uploads/"+id, nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.Offset > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.State != "uploading" || st.Offset <= 0 || st.Offset >= size {
		t.Fatalf("after the drop: state %q offset %d of %d; want a partial upload", st.State, st.Offset, size)
	}
	t.Logf("interrupted at %d of %d bytes", st.Offset, size)
	if _, err := c.Video(ctx, st.VideoID); err == nil {
		t.Fatal("a partial upload already has a video")
	}

	// Resume: only the rest is sent.
	var firstProgress int64 = -1
	res, err := c.Upload(ctx, clip, client.UploadOptions{
		Resume: uploadURL,
		Progress: func(sent, total int64) {
			if firstProgress < 0 {
				firstProgress = sent
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.VideoID != st.VideoID {
		t.Fatalf("resumed upload became video %s, want %s", res.VideoID, st.VideoID)
	}
	if firstProgress <= st.Offset-1 {
		t.Fatalf("resume restarted from %d, want beyond %d", firstProgress, st.Offset)
	}

	start := time.Now()
	v, err := c.WaitReady(ctx, res.VideoID, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ready %v after upload end", time.Since(start).Round(time.Millisecond))
	if v.Title != "Walking skeleton" || v.Kind != "video" || v.HLSURL == "" || v.ThumbnailURL == "" {
		t.Fatalf("ready video: %+v", v)
	}
	if !strings.HasPrefix(v.HLSURL, p.urls.Edge+"/") {
		t.Fatalf("hls_url %s is not on the edge %s", v.HLSURL, p.urls.Edge)
	}

	resp, body := get(t, v.HLSURL)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "#EXTM3U") {
		t.Fatalf("master playlist: %d\n%s", resp.StatusCode, body)
	}
	vars := variants(t, v.HLSURL, body)
	if len(vars) < 3 {
		t.Fatalf("master playlist lists %d variants, want ≥ 3:\n%s", len(vars), body)
	}
	if strings.Contains(string(body), "1920x1080") {
		t.Fatalf("ladder goes above the 720p source:\n%s", body)
	}
	resp, vbody := get(t, vars[0])
	if resp.StatusCode != 200 {
		t.Fatalf("variant playlist %s: %d", vars[0], resp.StatusCode)
	}
	seg := firstSegment(t, vars[0], vbody)
	r1, b1 := get(t, seg)
	r2, b2 := get(t, seg)
	if r1.StatusCode != 200 || r2.StatusCode != 200 || len(b1) == 0 || string(b1) != string(b2) {
		t.Fatalf("segment fetches: %d (%d bytes), %d (%d bytes)", r1.StatusCode, len(b1), r2.StatusCode, len(b2))
	}
	if cs := r2.Header.Get("Cache-Status"); !strings.Contains(cs, "; hit") {
		t.Fatalf("second fetch Cache-Status = %q, want a hit (first: %q)", cs, r1.Header.Get("Cache-Status"))
	}
	resp, thumb := get(t, v.ThumbnailURL)
	if resp.StatusCode != 200 || len(thumb) < 3 || thumb[0] != 0xFF || thumb[1] != 0xD8 {
		t.Fatalf("thumbnail: %d, %d bytes", resp.StatusCode, len(thumb))
	}

	// The video is listed, newest first.
	list, _, err := c.Videos(ctx, "", 10)
	if err != nil || len(list) == 0 || list[0].ID != v.ID {
		t.Fatalf("list: %v %+v", err, list)
	}
	// Sources are never served by the origin or the edge.
	resp, _ = get(t, p.urls.Edge+"/media/sources/"+v.ID)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("source served by the edge: %d", resp.StatusCode)
	}
}

// TestImageUpload: images become resized variants.
func TestImageUpload(t *testing.T) {
	p := startPlatform(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := p.user(t, "iris")
	img := filepath.Join(clipDir(t), "photo.png")
	if out, err := runFFmpeg("-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1600x900", "-frames:v", "1", img); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	res, err := c.Upload(ctx, img, client.UploadOptions{Title: "A photo"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.WaitReady(ctx, res.VideoID, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind != "image" || len(v.Renditions) < 2 || v.ThumbnailURL == "" {
		t.Fatalf("image: %+v", v)
	}
	widths := map[int]bool{}
	for _, r := range v.Renditions {
		if r.Width <= 0 || r.Width > 1600 {
			t.Fatalf("rendition %+v out of range", r)
		}
		widths[r.Width] = true
		resp, body := get(t, r.URL)
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("rendition %s: %d", r.URL, resp.StatusCode)
		}
	}
	if len(widths) < 2 {
		t.Fatalf("renditions have %d distinct widths, want ≥ 2: %+v", len(widths), v.Renditions)
	}
}

func runFFmpeg(args ...string) ([]byte, error) {
	return execCommand("ffmpeg", args...)
}
