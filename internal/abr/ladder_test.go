package abr

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestLadder(t *testing.T) {
	type r = string // "name WxH video/max/buf/audio"
	cases := []struct {
		w, h int
		want []r
	}{
		{1920, 1080, []r{"360p 640x360 400/440/800/96", "720p 1280x720 3000/3300/6000/128", "1080p 1920x1080 6000/6600/12000/128"}},
		{3840, 2160, []r{"360p 640x360 400/440/800/96", "720p 1280x720 3000/3300/6000/128", "1080p 1920x1080 6000/6600/12000/128"}},
		{1280, 720, []r{"360p 640x360 400/440/800/96", "480p 854x480 1100/1210/2200/128", "720p 1280x720 3000/3300/6000/128"}},
		{854, 480, []r{"240p 426x240 150/170/300/64", "360p 640x360 400/440/800/96", "480p 854x480 1100/1210/2200/128"}},
		{640, 360, []r{"240p 426x240 150/170/300/64", "360p 640x360 400/440/800/96"}},
		// Between table rows: the usable rows plus a source-size rung.
		{534, 300, []r{"240p 426x240 150/170/300/64", "300p 534x300 260/290/520/64"}},
		{824, 464, []r{"240p 426x240 150/170/300/64", "360p 640x360 400/440/800/96", "464p 824x464 990/1090/1980/96"}},
		// Less than 1.25x the top usable row: no extra rung.
		{700, 394, []r{"240p 426x240 150/170/300/64", "360p 640x360 400/440/800/96"}},
		{426, 240, []r{"240p 426x240 150/170/300/64"}},
		{320, 180, []r{"180p 320x180 80/90/160/64"}},
		{17, 17, []r{"16p 16x16 50/60/100/64"}},
		// Portrait: the box turns, names stay "lines on the short side".
		{1080, 1920, []r{"360p 360x640 400/440/800/96", "720p 720x1280 3000/3300/6000/128", "1080p 1080x1920 6000/6600/12000/128"}},
		// 4:3 and cinemascope: height- and width-limited fits.
		{1440, 1080, []r{"360p 480x360 400/440/800/96", "720p 960x720 3000/3300/6000/128", "1080p 1440x1080 6000/6600/12000/128"}},
		{1920, 800, []r{"360p 640x266 400/440/800/96", "720p 1280x534 3000/3300/6000/128", "1080p 1920x800 6000/6600/12000/128"}},
		{1920, 1036, []r{"360p 640x346 400/440/800/96", "720p 1280x690 3000/3300/6000/128", "1080p 1920x1036 6000/6600/12000/128"}},
		// Odd sizes: even output, never above the source.
		{641, 361, []r{"240p 426x240 150/170/300/64", "360p 640x360 400/440/800/96"}},
		{1080, 1080, []r{"360p 360x360 400/440/800/96", "720p 720x720 3000/3300/6000/128", "1080p 1080x1080 6000/6600/12000/128"}},
		{16, 549, []r{"240p 12x426 150/170/300/64", "16p 16x548 150/170/300/64"}},
		{1, 1, nil},
		{0, 0, nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%d", c.w, c.h), func(t *testing.T) {
			var got []string
			for _, r := range Ladder(Info{Width: c.w, Height: c.h}) {
				got = append(got, fmt.Sprintf("%s %dx%d %d/%d/%d/%d", r.Name, r.Width, r.Height, r.VideoKbps, r.MaxKbps, r.BufKbps, r.AudioKbps))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Ladder(%dx%d)\n got %q\nwant %q", c.w, c.h, got, c.want)
			}
		})
	}
}

// TestLadderProperties checks, over many sizes, the invariants the worker
// relies on.
func TestLadderProperties(t *testing.T) {
	for w := 16; w <= 4096; w += 37 {
		for h := 16; h <= 4096; h += 41 {
			rungs := Ladder(Info{Width: w, Height: h})
			if len(rungs) == 0 || len(rungs) > 3 {
				t.Fatalf("%dx%d: %d rungs", w, h, len(rungs))
			}
			for i, r := range rungs {
				if r.Width%2 != 0 || r.Height%2 != 0 || r.Width < 2 || r.Height < 2 {
					t.Fatalf("%dx%d: rung %v not even", w, h, r)
				}
				if r.Width > w || r.Height > h {
					t.Fatalf("%dx%d: rung %v upscales", w, h, r)
				}
				if i > 0 && (r.Height*r.Width <= rungs[i-1].Height*rungs[i-1].Width || r.VideoKbps < rungs[i-1].VideoKbps) {
					t.Fatalf("%dx%d: rungs not ascending: %v", w, h, rungs)
				}
				// Aspect ratio kept up to rounding one side to even:
				// |W*h - w*H| <= max(w, h).
				if d := r.Width*h - w*r.Height; d > max(w, h) || -d > max(w, h) {
					t.Fatalf("%dx%d: rung %v changes aspect ratio", w, h, r)
				}
			}
			if !slices.Equal(rungs, Ladder(Info{Width: w, Height: h})) {
				t.Fatalf("%dx%d: not deterministic", w, h)
			}
		}
	}
}

func goldenOptions() TranscodeOptions {
	info := Info{
		Kind: KindVideo, Format: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 10,
		Width: 1920, Height: 1080, FPS: 30, VideoCodec: "h264", HasAudio: true,
	}
	return TranscodeOptions{Src: "/in/src.mp4", OutDir: "/out/job-1", Info: info, Threads: 2}
}

// TestArgsHLSGolden pins the ffmpeg command. Run with -update to rewrite
// testdata/args_hls.golden after a deliberate change.
func TestArgsHLSGolden(t *testing.T) {
	got := strings.Join(ArgsHLS(goldenOptions()), "\n") + "\n"
	golden := filepath.Join("testdata", "args_hls.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestArgsHLSGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("ArgsHLS changed; run with -update if deliberate.\n--- got\n%s--- want\n%s", got, want)
	}
}

func TestArgsHLSShape(t *testing.T) {
	o := goldenOptions()
	o.Info.HasAudio = false
	o.Threads = 0
	o.Info.Format = "something,else"
	args := strings.Join(ArgsHLS(o), " ")
	for _, want := range []string{
		"-var_stream_map v:0 v:1 v:2",
		"[0:V:0]split=3[s0][s1][s2];[s0]scale=w=640:h=360,setsar=1[v0]",
		"-force_key_frames expr:gte(t,n_forced*2)",
		"-sc_threshold 0",
		"-protocol_whitelist file,pipe",
		"-nostdin",
		"-i file:/in/src.mp4",
		"/out/job-1/v%v/index.m3u8",
		"-preset veryfast",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q:\n%s", want, args)
		}
	}
	for _, bad := range []string{"0:a:0", "-c:a", "-threads", " -f something"} {
		if strings.Contains(args, bad) {
			t.Errorf("args contain %q:\n%s", bad, args)
		}
	}
	o.SegmentSeconds = 4
	o.Preset = "ultrafast"
	o.Rungs = Ladder(Info{Width: 640, Height: 360})
	args = strings.Join(ArgsHLS(o), " ")
	for _, want := range []string{"-hls_time 4", "n_forced*4", "-preset ultrafast", "split=2[s0][s1]"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q:\n%s", want, args)
		}
	}
}
