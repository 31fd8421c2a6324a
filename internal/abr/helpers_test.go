package abr

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fixtures are generated once per test binary into a shared directory.
var fixtures struct {
	dir  string
	once sync.Map // name -> *fixture
}

type fixture struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "abr-test-")
	if err != nil {
		panic(err)
	}
	fixtures.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTools skips the test when ffmpeg or ffprobe is missing.
func needTools(t testing.TB) Tools {
	t.Helper()
	for _, name := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed", name)
		}
	}
	return Tools{}
}

// fixtureFile returns the shared fixture name, making it with gen once.
func fixtureFile(t testing.TB, name string, gen func(path string) error) string {
	t.Helper()
	v, _ := fixtures.once.LoadOrStore(name, &fixture{})
	f := v.(*fixture)
	f.once.Do(func() {
		f.path = filepath.Join(fixtures.dir, name)
		f.err = gen(f.path)
	})
	if f.err != nil {
		t.Fatalf("fixture %s: %v", name, f.err)
	}
	return f.path
}

// testVideo makes (once) an MP4 of testsrc2 (+ a sine tone if audio),
// x264 ultrafast, 30 fps.
func testVideo(t testing.TB, w, h int, secs float64, audio bool) string {
	t.Helper()
	needTools(t)
	name := "src_" + strconv.Itoa(w) + "x" + strconv.Itoa(h) + "_" + strconv.FormatFloat(secs, 'f', -1, 64)
	if audio {
		name += "_a"
	}
	return fixtureFile(t, name+".mp4", func(path string) error {
		d := strconv.FormatFloat(secs, 'f', -1, 64)
		args := []string{"-hide_banner", "-nostdin", "-v", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=s=" + strconv.Itoa(w) + "x" + strconv.Itoa(h) + ":r=30:d=" + d}
		if audio {
			args = append(args, "-f", "lavfi", "-i", "sine=f=440:d="+d)
		}
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "2")
		if audio {
			args = append(args, "-c:a", "aac", "-shortest")
		}
		args = append(args, path)
		out, err := exec.Command("ffmpeg", args...).CombinedOutput()
		if err != nil {
			return &genError{err: err, out: string(out)}
		}
		return nil
	})
}

type genError struct {
	err error
	out string
}

func (e *genError) Error() string { return e.err.Error() + ": " + e.out }

// writePNG writes a w x h PNG with a gradient; with alpha the left half is
// fully transparent.
func writePNG(t testing.TB, path string, w, h int, alpha bool) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if alpha && x < w/2 {
				a = 0
			}
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x), G: uint8(y), B: 128, A: a})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pngHeaderOnly returns a PNG signature plus only an IHDR chunk claiming
// w x h RGB pixels: what an image bomb's header looks like.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// jpegWithOrientation encodes a w x h JPEG and inserts an EXIF APP1
// segment with the given Orientation right after SOI.
func jpegWithOrientation(t testing.TB, w, h int, orientation uint16) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(255 * x / w), G: 40, B: 90, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return insertExif(buf.Bytes(), orientation, binary.LittleEndian)
}

func insertExif(jpg []byte, orientation uint16, bo binary.ByteOrder) []byte {
	var tiff bytes.Buffer
	if bo == binary.LittleEndian {
		tiff.WriteString("II")
	} else {
		tiff.WriteString("MM")
	}
	_ = binary.Write(&tiff, bo, uint16(42))
	_ = binary.Write(&tiff, bo, uint32(8))
	_ = binary.Write(&tiff, bo, uint16(1)) // one entry
	_ = binary.Write(&tiff, bo, uint16(0x0112))
	_ = binary.Write(&tiff, bo, uint16(3))
	_ = binary.Write(&tiff, bo, uint32(1))
	_ = binary.Write(&tiff, bo, orientation)
	_ = binary.Write(&tiff, bo, uint16(0))
	_ = binary.Write(&tiff, bo, uint32(0)) // no next IFD
	app1 := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xff, 0xe1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(app1)+2))
	seg = append(seg, app1...)
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// probeSize returns the width and height ffprobe reports for a file.
func probeSize(t testing.TB, path string) (int, int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height", "-of", "csv=p=0:s=x", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	// Playlists print the stream once more under their program: take the
	// first line.
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	w, h, _ := strings.Cut(strings.TrimSpace(first), "x")
	wi, _ := strconv.Atoi(w)
	hi, _ := strconv.Atoi(h)
	return wi, hi
}

func mustProbe(t testing.TB, path string) Info {
	t.Helper()
	info, err := Probe(context.Background(), needTools(t), Limits{}, path)
	if err != nil {
		t.Fatalf("Probe(%s): %v", filepath.Base(path), err)
	}
	return info
}
