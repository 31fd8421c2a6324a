package abr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// filesUnder lists every file under dir, relative, slash-separated, sorted.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// checkPlaylists verifies the master playlist and every media playlist
// against res and returns the EXTINF durations per variant.
func checkPlaylists(t *testing.T, out string, res Result, wantRungs []Rung) {
	t.Helper()
	if res.Master != "master.m3u8" || len(res.Variants) != len(wantRungs) {
		t.Fatalf("result = %+v", res)
	}
	master, err := os.ReadFile(filepath.Join(out, res.Master))
	if err != nil {
		t.Fatal(err)
	}
	infs := regexp.MustCompile(`#EXT-X-STREAM-INF:BANDWIDTH=(\d+),RESOLUTION=(\d+)x(\d+)`).FindAllStringSubmatch(string(master), -1)
	if len(infs) != len(wantRungs) {
		t.Fatalf("master lists %d variants, want %d:\n%s", len(infs), len(wantRungs), master)
	}
	for i, v := range res.Variants {
		r := wantRungs[i]
		if v.Rung != r || v.Playlist != "v"+strconv.Itoa(i)+"/index.m3u8" {
			t.Errorf("variant %d = %+v", i, v)
		}
		if infs[i][2] != strconv.Itoa(r.Width) || infs[i][3] != strconv.Itoa(r.Height) {
			t.Errorf("variant %d: master RESOLUTION %sx%s, want %dx%d", i, infs[i][2], infs[i][3], r.Width, r.Height)
		}
		if bw, _ := strconv.Atoi(infs[i][1]); bw != v.Bandwidth || bw < r.VideoKbps*1000 {
			t.Errorf("variant %d: BANDWIDTH %d, Variant.Bandwidth %d", i, bw, v.Bandwidth)
		}
		if !strings.Contains(string(master), "\n"+v.Playlist+"\n") {
			t.Errorf("master does not reference %s", v.Playlist)
		}
		pl, err := os.ReadFile(filepath.Join(out, v.Playlist))
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		segs := 0
		sc := bufio.NewScanner(bytes.NewReader(pl))
		for sc.Scan() {
			line := sc.Text()
			if d, ok := strings.CutPrefix(line, "#EXTINF:"); ok {
				sec, err := strconv.ParseFloat(strings.TrimSuffix(d, ","), 64)
				if err != nil || sec <= 0 || sec > 2.1 {
					t.Errorf("%s: segment of %q s, want (0, 2.1]", v.Playlist, d)
				}
				total += sec
				segs++
			} else if line != "" && !strings.HasPrefix(line, "#") {
				if _, err := os.Stat(filepath.Join(out, filepath.Dir(v.Playlist), line)); err != nil {
					t.Errorf("%s lists missing %s", v.Playlist, line)
				}
			}
		}
		if !strings.Contains(string(pl), "#EXT-X-PLAYLIST-TYPE:VOD") || !strings.Contains(string(pl), "#EXT-X-ENDLIST") || !strings.Contains(string(pl), "#EXT-X-MAP:URI=") {
			t.Errorf("%s is not a finished fMP4 VOD playlist:\n%s", v.Playlist, pl)
		}
		if segs == 0 {
			t.Errorf("%s has no segments", v.Playlist)
		}
		t.Logf("%s: %d segments, %.2f s, BANDWIDTH %d", v.Playlist, segs, total, v.Bandwidth)
	}
	if got := filesUnder(t, out); !slices.Equal(got, res.Files) {
		t.Errorf("Files = %q\non disk %q", res.Files, got)
	}
}

func TestTranscodeHLS1080p(t *testing.T) {
	src := testVideo(t, 1920, 1080, 2, true)
	info := mustProbe(t, src)
	out := filepath.Join(t.TempDir(), "hls")
	rungs := Ladder(info)
	start := time.Now()
	res, err := TranscodeHLS(context.Background(), TranscodeOptions{Src: src, OutDir: out, Info: info, Preset: "ultrafast"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1080p 2 s -> %d rungs in %v", len(rungs), time.Since(start))
	if len(rungs) != 3 || rungs[2].Height != 1080 {
		t.Fatalf("ladder %v", rungs)
	}
	checkPlaylists(t, out, res, rungs)
	if master, _ := os.ReadFile(filepath.Join(out, "master.m3u8")); !strings.Contains(string(master), "mp4a.40.2") {
		t.Errorf("master lacks the audio codec:\n%s", master)
	}
	// The top rendition decodes at its advertised size.
	if w, h := probeSize(t, filepath.Join(out, "v2", "index.m3u8")); w != 1920 || h != 1080 {
		t.Errorf("v2 is %dx%d", w, h)
	}
}

func TestTranscodeHLS360pProgress(t *testing.T) {
	src := testVideo(t, 640, 360, 3, false)
	info := mustProbe(t, src)
	out := t.TempDir()
	// Leftovers of an earlier attempt must not survive.
	if err := os.MkdirAll(filepath.Join(out, "v0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "v0", "seg_09999.m4s"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	var calls []float64
	res, err := TranscodeHLS(context.Background(), TranscodeOptions{
		Src: src, OutDir: out, Info: info, Preset: "medium", Threads: 1,
		Progress: func(f float64) { calls = append(calls, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	rungs := Ladder(info)
	for _, r := range res.Variants {
		if r.Rung.Height > 360 || r.Rung.Width > 640 {
			t.Errorf("rung %v above the source", r.Rung)
		}
	}
	checkPlaylists(t, out, res, rungs)
	t.Logf("progress calls: %v", calls)
	if len(calls) == 0 || calls[len(calls)-1] != 1 {
		t.Fatalf("progress %v: want increasing fractions ending at 1", calls)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] <= calls[i-1] || calls[i] < 0 || calls[i] > 1 {
			t.Fatalf("progress not increasing: %v", calls)
		}
	}
}

// ffmpegChildren lists the pids of ffmpeg processes whose parent is this
// test process (Linux /proc).
func ffmpegChildren() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ..."
		s := string(stat)
		closeParen := strings.LastIndexByte(s, ')')
		if closeParen < 0 || !strings.Contains(s[:closeParen], "(ffmpeg") {
			continue
		}
		if fields := strings.Fields(s[closeParen+1:]); len(fields) > 1 && fields[1] == me {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestTranscodeHLSCancel cancels the context while ffmpeg runs (seen in
// /proc on Linux) and checks that ffmpeg is gone, TranscodeHLS returns
// promptly with context.Canceled, and no partial output remains.
func TestTranscodeHLSCancel(t *testing.T) {
	src := testVideo(t, 640, 360, 3, false)
	info := mustProbe(t, src)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type seen struct {
		pids []int
		at   time.Time
	}
	watch := make(chan seen, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.GOOS == "linux" && time.Now().Before(deadline) {
			if pids := ffmpegChildren(); len(pids) > 0 {
				time.Sleep(150 * time.Millisecond) // let it get going
				watch <- seen{pids, time.Now()}
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		watch <- seen{nil, time.Now()}
		cancel()
	}()
	_, err := TranscodeHLS(ctx, TranscodeOptions{Src: src, OutDir: out, Info: info, Preset: "veryslow", Threads: 1})
	returned := time.Now()
	w := <-watch
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want context.Canceled and not ErrInvalid", err)
	}
	if d := returned.Sub(w.at); d > 3*time.Second {
		t.Errorf("TranscodeHLS returned %v after cancel", d)
	}
	if runtime.GOOS == "linux" {
		if len(w.pids) == 0 {
			t.Fatalf("never saw ffmpeg running")
		}
		for _, pid := range w.pids {
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				t.Errorf("ffmpeg pid %d still exists after cancel", pid)
			}
		}
	}
	if left := filesUnder(t, out); len(left) != 0 {
		t.Errorf("partial output left behind: %q", left)
	}
}

func TestTranscodeHLSCorruptInput(t *testing.T) {
	info := mustProbe(t, testVideo(t, 640, 360, 3, false))
	dir := t.TempDir()
	// The file changed after probing (or lied to the prober): ffmpeg fails.
	src := filepath.Join(dir, "src.mp4")
	if err := os.WriteFile(src, bytes.Repeat([]byte("garbage "), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	_, err := TranscodeHLS(context.Background(), TranscodeOptions{Src: src, OutDir: out, Info: info, Preset: "ultrafast"})
	wantInvalid(t, err, "abr: file is truncated or corrupt: ")
	if strings.Contains(err.Error(), dir) {
		t.Errorf("error leaks a path: %v", err)
	}
	if left := filesUnder(t, out); len(left) != 0 {
		t.Errorf("partial output left behind: %q", left)
	}
}

// TestTranscodeHLSTruncatedFaststart: an MP4 with its index up front, cut
// in half, probes fine and ffmpeg exits 0 on it ("partial file"); the
// short output gives it away.
func TestTranscodeHLSTruncatedFaststart(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	full := filepath.Join(dir, "full.mp4")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=s=320x180:r=30:d=3", "-c:v", "libx264", "-preset", "ultrafast",
		"-movflags", "+faststart", full).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(dir, "half.mp4")
	if err := os.WriteFile(half, data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	info := mustProbe(t, half)
	hls := filepath.Join(dir, "hls")
	_, err = TranscodeHLS(context.Background(), TranscodeOptions{Src: half, OutDir: hls, Info: info, Preset: "ultrafast"})
	wantInvalid(t, err, "abr: file is truncated or corrupt: only ")
	if left := filesUnder(t, hls); len(left) != 0 {
		t.Errorf("partial output left behind: %q", left)
	}
}

func TestTruncated(t *testing.T) {
	for _, c := range []struct {
		decoded, probed float64
		want            bool
	}{{1, 3, true}, {2.9, 3, false}, {0.5, 1.2, false}, {60, 100, true}, {80, 100, false}, {0, 0, false}} {
		if got := truncated(c.decoded, c.probed); got != c.want {
			t.Errorf("truncated(%v, %v) = %v", c.decoded, c.probed, got)
		}
	}
	if got := playlistSeconds("#EXTM3U\n#EXTINF:2.000000,\na.m4s\n#EXTINF:1.5,\nb.m4s\n#EXT-X-ENDLIST\n"); got != 3.5 {
		t.Errorf("playlistSeconds = %v", got)
	}
}

func TestTranscodeHLSValidation(t *testing.T) {
	video := Info{Kind: KindVideo, Width: 640, Height: 360, Duration: 1}
	for name, o := range map[string]TranscodeOptions{
		"image":      {Src: "/x", OutDir: "/tmp/x", Info: Info{Kind: KindImage, Width: 10, Height: 10}},
		"no src":     {OutDir: "/tmp/x", Info: video},
		"percent":    {Src: "/x", OutDir: "/tmp/a%v", Info: video},
		"preset":     {Src: "/x", OutDir: "/tmp/x", Info: video, Preset: "-vf"},
		"odd rung":   {Src: "/x", OutDir: "/tmp/x", Info: video, Rungs: []Rung{{Name: "x", Width: 641, Height: 360, VideoKbps: 1}}},
		"no bitrate": {Src: "/x", OutDir: "/tmp/x", Info: video, Rungs: []Rung{{Name: "x", Width: 640, Height: 360}}},
		"threads":    {Src: "/x", OutDir: "/tmp/x", Info: video, Threads: -1},
	} {
		if _, err := TranscodeHLS(context.Background(), o); err == nil || errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want a caller error", name, err)
		}
	}
}

func TestReadProgress(t *testing.T) {
	in := strings.Join([]string{
		"frame=0", "out_time_us=N/A", "out_time_ms=N/A", "progress=continue",
		"out_time_us=-9223372036854775807", "progress=continue",
		"out_time_us=2500000", "out_time_ms=2500000", "progress=continue",
		"out_time_us=2500000", "progress=continue", // no progress: no call
		"out_time_us=5000000", "progress=continue",
		"out_time_us=12000000", "progress=end", // clamped to 1
	}, "\n")
	var got []float64
	last := readProgress(strings.NewReader(in), 10, 0, func(f float64) { got = append(got, f) })
	if want := []float64{0.25, 0.5, 1}; !slices.Equal(got, want) || last != 1 {
		t.Fatalf("got %v (last %v), want %v", got, last, want)
	}
	// Throttled: only the first report within the interval.
	got = nil
	readProgress(strings.NewReader(in), 10, time.Hour, func(f float64) { got = append(got, f) })
	if !slices.Equal(got, []float64{0.25}) {
		t.Fatalf("throttled: got %v", got)
	}
	// Only the misnamed out_time_ms (microseconds).
	got = nil
	readProgress(strings.NewReader("out_time_ms=1000000\nprogress=continue\n"), 4, 0, func(f float64) { got = append(got, f) })
	if !slices.Equal(got, []float64{0.25}) {
		t.Fatalf("out_time_ms: got %v", got)
	}
	// Unknown duration: no calls, no panic.
	readProgress(strings.NewReader(in), 0, 0, func(f float64) { t.Fatalf("call %v", f) })
}

func TestMasterBandwidths(t *testing.T) {
	m := "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=235400,RESOLUTION=426x240,CODECS=\"avc1.42c015,mp4a.40.2\"\nv0/index.m3u8\n\n#EXT-X-STREAM-INF:BANDWIDTH=512600,RESOLUTION=640x360\r\nv1/index.m3u8\r\n"
	got := masterBandwidths(m)
	if got["v0/index.m3u8"] != 235400 || got["v1/index.m3u8"] != 512600 || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
}

func TestExcerpt(t *testing.T) {
	stderr := "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d6697af380] moov atom not found\n" +
		"file:/srv/up/abc.mp4: Invalid data found when processing input\n" +
		"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d6697af380] moov atom not found\n" +
		"\x1b[31mweird\x00 bytes\n" +
		"line four\nline five\nConversion failed!\n"
	got := excerpt(stderr, map[string]string{"/srv/up/abc.mp4": "input"})
	want := "moov atom not found; input: Invalid data found when processing input; line five"
	if got != want {
		t.Fatalf("excerpt = %q\nwant      %q", got, want)
	}
	long := excerpt(strings.Repeat("é", 400), nil)
	if len(long) > 245 || !strings.HasSuffix(long, "…") || !utf8Valid(long) {
		t.Fatalf("long excerpt %q", long)
	}
	if excerpt("", nil) != "no error output" {
		t.Fatal("empty excerpt")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
