package abr

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// decodeJPEG checks that path is a JPEG without EXIF and returns its size
// and the colour of pixel (x, y).
func decodeJPEG(t *testing.T, path string, x, y int) (w, h int, r, g, b uint32) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("Exif\x00\x00")) || bytes.Contains(data, []byte("Lavc")) {
		t.Errorf("%s keeps metadata", filepath.Base(path))
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	r, g, b, _ = img.At(x, y).RGBA()
	return img.Bounds().Dx(), img.Bounds().Dy(), r >> 8, g >> 8, b >> 8
}

func TestImageVariants(t *testing.T) {
	tools := needTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.png")
	writePNG(t, src, 1600, 900, true) // left half transparent
	info := mustProbe(t, src)
	out := filepath.Join(dir, "out")
	names, err := ImageVariants(context.Background(), tools, Limits{}, src, info, out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"thumb.jpg", "large.jpg"}) {
		t.Fatalf("names = %q", names)
	}
	for i, want := range [][2]int{{320, 180}, {1280, 720}} {
		p := filepath.Join(out, names[i])
		if w, h := probeSize(t, p); w != want[0] || h != want[1] {
			t.Errorf("%s: ffprobe says %dx%d, want %dx%d", names[i], w, h, want[0], want[1])
		}
		// Transparency is flattened onto white, not black.
		_, _, r, g, b := decodeJPEG(t, p, 2, 2)
		if r < 240 || g < 240 || b < 240 {
			t.Errorf("%s: transparent pixel became (%d,%d,%d), want white", names[i], r, g, b)
		}
	}
	if left := filesUnder(t, out); !slices.Equal(left, []string{"large.jpg", "thumb.jpg"}) {
		t.Errorf("files in outDir: %q", left)
	}
}

func TestImageVariantsSmallSource(t *testing.T) {
	tools := needTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "small.png")
	writePNG(t, src, 201, 99, false)
	info := mustProbe(t, src)
	names, err := ImageVariants(context.Background(), tools, Limits{}, src, info, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 2 {
		t.Fatalf("names = %q", names)
	}
	for _, n := range names {
		if w, h, _, _, _ := decodeJPEG(t, filepath.Join(dir, n), 0, 0); w != 201 || h != 99 {
			t.Errorf("%s is %dx%d, want the source's 201x99 (never upscaled)", n, w, h)
		}
	}
}

func TestImageVariantsRefusesTooManyPixels(t *testing.T) {
	info := Info{Kind: KindImage, Width: 8000, Height: 6000}
	_, err := ImageVariants(context.Background(), Tools{FFmpeg: "/nonexistent"}, Limits{}, "/x.png", info, t.TempDir())
	wantInvalid(t, err, "abr: image is 8000x6000 pixels, over the 40000000 pixel limit")
}

func TestFitWithin(t *testing.T) {
	for _, c := range []struct{ w, h, mw, mh, ww, wh int }{
		{1600, 900, 320, 1280, 320, 180},
		{200, 100, 320, 1280, 200, 100},
		{1000, 8000, 320, 1280, 160, 1280},
		{10000, 3, 320, 1280, 320, 1},
		{321, 321, 320, 1280, 320, 320},
	} {
		if w, h := fitWithin(c.w, c.h, c.mw, c.mh); w != c.ww || h != c.wh {
			t.Errorf("fitWithin(%d,%d,%d,%d) = %d,%d want %d,%d", c.w, c.h, c.mw, c.mh, w, h, c.ww, c.wh)
		}
	}
}

func TestPoster(t *testing.T) {
	tools := needTools(t)
	src := testVideo(t, 1920, 1080, 2, true)
	info := mustProbe(t, src)
	out := filepath.Join(t.TempDir(), "poster.jpg")
	if err := Poster(context.Background(), tools, src, info, out); err != nil {
		t.Fatal(err)
	}
	if w, h, _, _, _ := decodeJPEG(t, out, 0, 0); w != 640 || h != 360 {
		t.Fatalf("poster is %dx%d, want 640x360", w, h)
	}
	if left := filesUnder(t, filepath.Dir(out)); !slices.Equal(left, []string{"poster.jpg"}) {
		t.Errorf("files: %q", left)
	}

	// A duration that overstates the file: the seek lands past the end,
	// Poster falls back to the first frame.
	small := testVideo(t, 640, 360, 3, false)
	info = mustProbe(t, small)
	info.Duration = 100
	out = filepath.Join(t.TempDir(), "p.jpg")
	if err := Poster(context.Background(), tools, small, info, out); err != nil {
		t.Fatal(err)
	}
	if w, h, _, _, _ := decodeJPEG(t, out, 0, 0); w != 640 || h != 360 {
		t.Fatalf("poster is %dx%d", w, h)
	}

	// Not a video: an input error, and nothing left behind.
	bad := filepath.Join(t.TempDir(), "bad.mp4")
	if err := os.WriteFile(bad, []byte("nope nope nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Poster(context.Background(), tools, bad, info, filepath.Join(filepath.Dir(bad), "x.jpg"))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if left := filesUnder(t, filepath.Dir(bad)); !slices.Equal(left, []string{"bad.mp4"}) {
		t.Errorf("files: %q", left)
	}
}
