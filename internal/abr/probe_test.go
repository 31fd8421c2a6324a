package abr

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProbeVideo(t *testing.T) {
	info := mustProbe(t, testVideo(t, 1920, 1080, 2, true))
	if info.Kind != KindVideo || info.Width != 1920 || info.Height != 1080 || !info.HasAudio ||
		info.VideoCodec != "h264" || !strings.Contains(info.Format, "mp4") ||
		math.Abs(info.FPS-30) > 0.01 || math.Abs(info.Duration-2) > 0.1 {
		t.Fatalf("Probe = %+v", info)
	}
}

func TestProbeVideoWithoutAudio(t *testing.T) {
	info := mustProbe(t, testVideo(t, 640, 360, 3, false))
	if info.Kind != KindVideo || info.Width != 640 || info.Height != 360 || info.HasAudio || math.Abs(info.Duration-3) > 0.1 {
		t.Fatalf("Probe = %+v", info)
	}
}

func TestProbePNG(t *testing.T) {
	needTools(t)
	p := filepath.Join(t.TempDir(), "upload") // no extension: content decides
	writePNG(t, p, 200, 100, false)
	info := mustProbe(t, p)
	if info.Kind != KindImage || info.Width != 200 || info.Height != 100 || info.Format != "png_pipe" || info.Duration != 0 || info.HasAudio {
		t.Fatalf("Probe = %+v", info)
	}
}

func TestProbeJPEGOrientation(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "photo.jpg")
	if err := os.WriteFile(p, jpegWithOrientation(t, 64, 32, 6), 0o644); err != nil {
		t.Fatal(err)
	}
	info := mustProbe(t, p)
	if info.Kind != KindImage || info.Width != 32 || info.Height != 64 {
		t.Fatalf("Probe = %+v, want an upright 32x64 image", info)
	}
	// ffmpeg applies the orientation when decoding, so the variants agree
	// with Info.
	names, err := ImageVariants(context.Background(), Tools{}, Limits{}, p, info, dir)
	if err != nil {
		t.Fatal(err)
	}
	if w, h := probeSize(t, filepath.Join(dir, names[0])); w != 32 || h != 64 {
		t.Fatalf("variant is %dx%d, want 32x64", w, h)
	}
}

// wantInvalid checks that err wraps ErrInvalid and its message contains
// want.
func wantInvalid(t *testing.T, err error, want string) {
	t.Helper()
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %q, want it to contain %q", err, want)
	}
	if !strings.HasPrefix(err.Error(), "abr: ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %q: want one line starting with \"abr: \"", err)
	}
}

func TestProbeRejects(t *testing.T) {
	tools := needTools(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src, err := os.ReadFile(testVideo(t, 640, 360, 3, false))
	if err != nil {
		t.Fatal(err)
	}
	truncated := write("half.mp4", src[:len(src)/2]) // moov is at the end

	cases := []struct {
		name, path string
		want       string
		notInMsg   string
	}{
		{"text", write("notes.txt", []byte("hello, this is just text\nline two\n")), "abr: not a media file", ""},
		{"empty", write("empty.mp4", nil), "abr: empty file", ""},
		{"truncated mp4", truncated, "abr: file is truncated or corrupt: moov atom not found", dir},
		{"corrupt png", write("bad.png", pngHeaderOnly(100, 100)[:20]), "abr: file is truncated or corrupt", ""},
		// A valid HLS playlist naming a local file: the hls demuxer would
		// open it; the demuxer allow-list refuses the playlist first.
		{"hls playlist", write("upload.bin", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n"+testVideo(t, 640, 360, 3, false)+"\n#EXT-X-ENDLIST\n")),
			"abr: not a media file (unsupported format)", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Probe(context.Background(), tools, Limits{}, c.path)
			wantInvalid(t, err, c.want)
			if c.notInMsg != "" && strings.Contains(err.Error(), c.notInMsg) {
				t.Fatalf("err = %q leaks the path", err)
			}
		})
	}
}

// TestProbeImageBomb: a 30000x30000 PNG is refused from its header alone,
// before ffprobe runs (a missing ffprobe would make the error different).
func TestProbeImageBomb(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bomb.png")
	if err := os.WriteFile(p, pngHeaderOnly(30000, 30000), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Probe(context.Background(), Tools{FFprobe: "/nonexistent/ffprobe"}, Limits{}, p)
	wantInvalid(t, err, "abr: image is 30000x30000 pixels, over the 40000000 pixel limit")
	if err.Error() != "abr: image is 30000x30000 pixels, over the 40000000 pixel limit" {
		t.Fatalf("err = %q", err)
	}
}

func TestProbeLimits(t *testing.T) {
	tools := needTools(t)
	src := testVideo(t, 640, 360, 3, false)
	_, err := Probe(context.Background(), tools, Limits{MaxDuration: time.Second}, src)
	wantInvalid(t, err, "abr: video is 3s long, over the 1s limit")
	_, err = Probe(context.Background(), tools, Limits{MaxPixels: 640 * 359}, src)
	wantInvalid(t, err, "over the 229760 pixel limit")
}

func TestProbeNotFound(t *testing.T) {
	_, err := Probe(context.Background(), Tools{}, Limits{}, filepath.Join(t.TempDir(), "missing"))
	if err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want a non-input error", err)
	}
}

func TestParseProbe(t *testing.T) {
	lim := Limits{}.withDefaults()
	const mp4 = `"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"12.5"}`
	cases := []struct {
		name, json string
		want       Info
		err        string
	}{
		{"video", `{"streams":[{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"30000/1001","r_frame_rate":"30000/1001"},{"codec_type":"audio"}],` + mp4 + `}`,
			Info{Kind: KindVideo, Format: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 12.5, Width: 1920, Height: 1080, FPS: 30000.0 / 1001, VideoCodec: "h264", HasAudio: true}, ""},
		{"rotated phone video", `{"streams":[{"codec_type":"video","codec_name":"hevc","width":1920,"height":1080,"avg_frame_rate":"30/1","side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]}],` + mp4 + `}`,
			Info{Kind: KindVideo, Format: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 12.5, Width: 1080, Height: 1920, FPS: 30, VideoCodec: "hevc"}, ""},
		{"legacy rotate tag", `{"streams":[{"codec_type":"video","codec_name":"h264","width":640,"height":480,"avg_frame_rate":"25/1","tags":{"rotate":"270"}}],` + mp4 + `}`,
			Info{Kind: KindVideo, Format: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 12.5, Width: 480, Height: 640, FPS: 25, VideoCodec: "h264"}, ""},
		{"anamorphic", `{"streams":[{"codec_type":"video","codec_name":"mpeg2video","width":720,"height":576,"sample_aspect_ratio":"64:45","avg_frame_rate":"25/1"}],"format":{"format_name":"mpeg","duration":"3"}}`,
			Info{Kind: KindVideo, Format: "mpeg", Duration: 3, Width: 1024, Height: 576, FPS: 25, VideoCodec: "mpeg2video"}, ""},
		{"stream duration fallback, vfr rate", `{"streams":[{"codec_type":"video","codec_name":"vp9","width":640,"height":360,"avg_frame_rate":"0/0","r_frame_rate":"90000/1","duration":"4.0"}],"format":{"format_name":"matroska,webm","duration":"N/A"}}`,
			Info{Kind: KindVideo, Format: "matroska,webm", Duration: 4, Width: 640, Height: 360, VideoCodec: "vp9"}, ""},
		{"png", `{"streams":[{"codec_type":"video","codec_name":"png","width":200,"height":100,"avg_frame_rate":"0/0"}],"format":{"format_name":"png_pipe"}}`,
			Info{Kind: KindImage, Format: "png_pipe", Width: 200, Height: 100, VideoCodec: "png"}, ""},
		{"single mjpeg frame in mov", `{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":800,"height":600,"nb_frames":"1"}],` + mp4 + `}`,
			Info{Kind: KindImage, Format: "mov,mp4,m4a,3gp,3g2,mj2", Width: 800, Height: 600, VideoCodec: "mjpeg"}, ""},
		{"audio with cover art", `{"streams":[{"codec_type":"audio","codec_name":"mp3"},{"codec_type":"video","codec_name":"mjpeg","width":500,"height":500,"disposition":{"attached_pic":1}}],` + mp4 + `}`,
			Info{}, "abr: no video stream (audio-only files are not supported)"},
		{"unsupported demuxer", `{"streams":[{"codec_type":"video","width":10,"height":10}],"format":{"format_name":"hls"}}`, Info{}, "abr: not a media file (unsupported format)"},
		{"nothing", `{}`, Info{}, "abr: not a media file"},
		{"no size", `{"streams":[{"codec_type":"video","codec_name":"png","width":0,"height":0}],"format":{"format_name":"png_pipe"}}`, Info{}, "abr: picture size is unknown"},
		{"no duration", `{"streams":[{"codec_type":"video","codec_name":"h264","width":640,"height":360}],"format":{"format_name":"mov","duration":"NaN"}}`, Info{}, "abr: video has no duration"},
		{"infinite duration", `{"streams":[{"codec_type":"video","codec_name":"h264","width":640,"height":360}],"format":{"format_name":"mov","duration":"+Inf"}}`, Info{}, "abr: video has no duration"},
		{"too long", `{"streams":[{"codec_type":"video","codec_name":"h264","width":640,"height":360}],"format":{"format_name":"mov","duration":"1e300"}}`, Info{}, "over the 4h0m0s limit"},
		{"too many pixels", `{"streams":[{"codec_type":"video","codec_name":"h264","width":9223372036854775807,"height":2}],"format":{"format_name":"mov","duration":"1"}}`, Info{}, "over the 40000000 pixel limit"},
		{"tiny video", `{"streams":[{"codec_type":"video","codec_name":"h264","width":8,"height":8}],"format":{"format_name":"mov","duration":"1"}}`, Info{}, "below the 16x16 minimum"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseProbe([]byte(c.json), lim)
			if c.err != "" {
				wantInvalid(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
	if _, err := parseProbe([]byte(`{"streams":`), lim); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("broken JSON: err = %v, want a non-input error", err)
	}
}

func TestExifOrientation(t *testing.T) {
	base := jpegWithOrientation(t, 8, 8, 1)
	for o := uint16(1); o <= 8; o++ {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			if got := exifOrientation(insertExif(base, o, bo)); got != int(o) {
				t.Errorf("orientation %d (%v): got %d", o, bo, got)
			}
		}
	}
	for _, b := range [][]byte{nil, {0xff, 0xd8}, []byte("not a jpeg"), insertExif(base, 9, binary.BigEndian)} {
		if got := exifOrientation(b); got != 1 {
			t.Errorf("exifOrientation(%q...) = %d, want 1", b[:min(len(b), 8)], got)
		}
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add([]byte(`{"streams":[{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"30/1","side_data_list":[{"rotation":90}],"sample_aspect_ratio":"4:3"},{"codec_type":"audio"}],"format":{"format_name":"mov,mp4","duration":"12.5"}}`))
	f.Add([]byte(`{"streams":[{"codec_type":"video","codec_name":"png","width":200,"height":100}],"format":{"format_name":"png_pipe"}}`))
	f.Add([]byte(`{"streams":[{"codec_type":"video","width":-1,"height":1e3,"r_frame_rate":"1/0","tags":{"rotate":"-450"}}],"format":{"format_name":"avi","duration":"-Inf"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	lim := Limits{MaxPixels: 1 << 20, MaxDuration: time.Hour}.withDefaults()
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseProbe(data, lim)
		if err != nil {
			if info != (Info{}) {
				t.Fatalf("error %v with non-zero Info %+v", err, info)
			}
			return
		}
		if info.Kind != KindVideo && info.Kind != KindImage {
			t.Fatalf("kind %q", info.Kind)
		}
		if info.Width <= 0 || info.Height <= 0 || overPixels(info.Width, info.Height, lim.MaxPixels) {
			t.Fatalf("size %dx%d", info.Width, info.Height)
		}
		if knownDemuxer(info.Format) == "" {
			t.Fatalf("format %q", info.Format)
		}
		for _, v := range []float64{info.Duration, info.FPS} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("bad number in %+v", info)
			}
		}
		if info.Kind == KindVideo && (info.Duration <= 0 || info.Duration > lim.MaxDuration.Seconds() || info.Width < minVideoSide || info.Height < minVideoSide) {
			t.Fatalf("bad video %+v", info)
		}
		if info.Kind == KindImage && (info.Duration != 0 || info.HasAudio) {
			t.Fatalf("bad image %+v", info)
		}
		// Every accepted video gets a ladder.
		if info.Kind == KindVideo && len(Ladder(info)) == 0 {
			t.Fatalf("no ladder for %+v", info)
		}
	})
}

func FuzzExifOrientation(f *testing.F) {
	f.Add(insertExif([]byte{0xff, 0xd8, 0xff, 0xd9}, 6, binary.BigEndian))
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe1, 0x00, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		if o := exifOrientation(data); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}
