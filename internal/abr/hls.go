package abr

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// progressEvery is the minimum interval between two Progress calls.
const progressEvery = 500 * time.Millisecond

// masterName is the master playlist's file name inside OutDir.
const masterName = "master.m3u8"

// TranscodeOptions configures TranscodeHLS and ArgsHLS.
type TranscodeOptions struct {
	Tools  Tools
	Limits Limits
	Src    string // input file; made absolute
	OutDir string // output directory; created if missing; made absolute
	Info   Info   // from Probe; Kind must be KindVideo
	Rungs  []Rung // empty: Ladder(Info)

	SegmentSeconds int    // default 2
	Preset         string // x264 preset, default "veryfast"
	Threads        int    // cap for decoder, filter and encoder threads; 0 = ffmpeg default
	// Progress is called with the fraction done (out_time / duration) as
	// ffmpeg reports it, at most every 500 ms, from the goroutine that
	// called TranscodeHLS, with increasing values; on success the last
	// call is Progress(1). May be nil.
	Progress func(fraction float64)
}

// Variant is one rendition that TranscodeHLS wrote.
type Variant struct {
	Rung      Rung
	Playlist  string // relative to OutDir, e.g. "v0/index.m3u8"
	Bandwidth int    // BANDWIDTH of the master playlist entry, bits/s
}

// Result lists what TranscodeHLS wrote.
type Result struct {
	Master   string    // "master.m3u8"
	Variants []Variant // in master playlist order (lowest rung first)
	Files    []string  // every file written, relative to OutDir, slash-separated, sorted
}

func (o TranscodeOptions) withDefaults() TranscodeOptions {
	o.Limits = o.Limits.withDefaults()
	if o.SegmentSeconds <= 0 {
		o.SegmentSeconds = DefaultSegmentSeconds
	}
	if o.Preset == "" {
		o.Preset = DefaultPreset
	}
	if len(o.Rungs) == 0 {
		o.Rungs = Ladder(o.Info)
	}
	return o
}

// absOr returns the absolute form of p, or p when that fails.
func absOr(p string) string {
	if p == "" {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// ArgsHLS returns the ffmpeg arguments (without the program name) that
// TranscodeHLS runs for o, after applying the same defaults.
//
// Shape: one input; a filter graph "[0:V:0]split=N" (the first video
// stream that is not cover art) feeding one scale per rung; N libx264
// encodes (plus N AAC encodes of the first audio stream when the source
// has audio); keyframes forced every SegmentSeconds; the HLS muxer writing
// fMP4 segments, one media playlist per rung (OutDir/v<i>/index.m3u8) and
// OutDir/master.m3u8.
func ArgsHLS(o TranscodeOptions) []string {
	o = o.withDefaults()
	src, out := absOr(o.Src), absOr(o.OutDir)
	seg := strconv.Itoa(o.SegmentSeconds)
	audio := o.Info.HasAudio
	n := len(o.Rungs)

	args := inputArgs(o.Limits, o.Threads, o.Info.Format, src)

	var fc strings.Builder
	fmt.Fprintf(&fc, "[0:V:0]split=%d", n) // V: not cover art
	for i := range n {
		fmt.Fprintf(&fc, "[s%d]", i)
	}
	for i, r := range o.Rungs {
		fmt.Fprintf(&fc, ";[s%d]scale=w=%d:h=%d,setsar=1[v%d]", i, r.Width, r.Height, i)
	}
	args = append(args, "-filter_complex", fc.String())
	if o.Threads > 0 {
		args = append(args, "-filter_complex_threads", strconv.Itoa(o.Threads))
	}
	for i := range n {
		args = append(args, "-map", fmt.Sprintf("[v%d]", i))
		if audio {
			args = append(args, "-map", "0:a:0")
		}
	}
	args = append(args,
		"-c:v", "libx264", "-preset", o.Preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
		"-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*"+seg+")",
	)
	for i, r := range o.Rungs {
		args = append(args,
			fmt.Sprintf("-b:v:%d", i), fmt.Sprintf("%dk", r.VideoKbps),
			fmt.Sprintf("-maxrate:v:%d", i), fmt.Sprintf("%dk", r.MaxKbps),
			fmt.Sprintf("-bufsize:v:%d", i), fmt.Sprintf("%dk", r.BufKbps),
		)
	}
	var vsm []string
	for i := range n {
		if audio {
			vsm = append(vsm, fmt.Sprintf("v:%d,a:%d", i, i))
		} else {
			vsm = append(vsm, fmt.Sprintf("v:%d", i))
		}
	}
	if audio {
		args = append(args, "-c:a", "aac", "-ac", "2")
		for i, r := range o.Rungs {
			args = append(args, fmt.Sprintf("-b:a:%d", i), fmt.Sprintf("%dk", r.AudioKbps))
		}
	}
	if o.Threads > 0 {
		args = append(args, "-threads", strconv.Itoa(o.Threads))
	}
	args = append(args,
		"-map_metadata", "-1",
		"-max_muxing_queue_size", "4096",
		"-f", "hls",
		"-hls_time", seg,
		"-hls_playlist_type", "vod",
		"-hls_segment_type", "fmp4",
		"-hls_flags", "independent_segments+temp_file",
		"-hls_fmp4_init_filename", "init.mp4",
		"-hls_segment_filename", filepath.Join(out, "v%v", "seg_%05d.m4s"),
		"-master_pl_name", masterName,
		"-var_stream_map", strings.Join(vsm, " "),
		filepath.Join(out, "v%v", "index.m3u8"),
	)
	return args
}

// inputArgs are the global and input options shared by every ffmpeg run:
// quiet, never interactive, machine-readable progress on stdout, the file
// protocol only (pipe for the progress output), the demuxer allow-list
// (forced to the probed demuxer when known), and the decoder pixel cap.
// extra options go right before -i.
func inputArgs(lim Limits, threads int, format, src string, extra ...string) []string {
	args := []string{
		"-hide_banner", "-nostdin", "-y", "-v", "error", "-nostats", "-progress", "pipe:1",
		"-protocol_whitelist", "file,pipe",
		"-format_whitelist", demuxerWhitelist(),
		"-max_pixels", maxPixelsArg(lim.MaxPixels),
	}
	if threads > 0 {
		args = append(args, "-threads", strconv.Itoa(threads))
	}
	if d := knownDemuxer(format); d != "" {
		args = append(args, "-f", d)
	}
	args = append(args, extra...)
	return append(args, "-i", "file:"+src)
}

func validPreset(p string) bool {
	switch p {
	case "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo":
		return true
	}
	return false
}

// variantDir is the directory of rung i inside OutDir.
func variantDir(i int) string { return "v" + strconv.Itoa(i) }

// TranscodeHLS transcodes o.Src into an HLS VOD ladder under o.OutDir with
// one ffmpeg process (see ArgsHLS for the command). It writes
// OutDir/master.m3u8 and OutDir/v<i>/{index.m3u8,init_<i>.mp4,seg_NNNNN.m4s}.
//
// Segments are fragmented MP4 (CMAF): against MPEG-TS they save the 188-byte
// packet overhead (several percent at low bitrates), the same segments can
// later be listed in a DASH manifest, and HLS needs fMP4 for HEVC or AV1
// renditions; hls.js and every Apple device since iOS 10 play them.
//
// Outputs of an earlier attempt (master.m3u8 and v<i> for this ladder) are
// removed first, and again on failure, so a retry starts clean and a failed
// job leaves nothing half-written. On cancellation of ctx or after
// o.Limits.Timeout ffmpeg is killed. An error caused by the input wraps
// ErrInvalid and names the reason with a one-line excerpt of ffmpeg's
// stderr.
func TranscodeHLS(ctx context.Context, o TranscodeOptions) (Result, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	o.Src, o.OutDir = absOr(o.Src), absOr(o.OutDir)
	bin, err := o.Tools.ffmpeg()
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("abr: %w", err)
	}
	n := len(o.Rungs)
	if err := removeOutputs(o.OutDir, n); err != nil {
		return Result{}, err
	}

	reported := 0.0
	res, err := runTool(ctx, o.Limits.Timeout, "ffmpeg", bin, o.OutDir, ArgsHLS(o), func(r io.Reader) error {
		reported = readProgress(r, o.Info.Duration, progressEvery, o.Progress)
		return nil
	})
	if err == nil && res.failed() {
		err = ffmpegFailure(res, map[string]string{o.Src: "input", o.OutDir: "output"})
	}
	if err == nil {
		var result Result
		var decoded float64
		result, decoded, err = collectHLS(o.OutDir, o.Rungs, o.Info.HasAudio)
		if err == nil && truncated(decoded, o.Info.Duration) {
			// ffmpeg exits 0 on a file that ends early (e.g. a faststart
			// MP4 cut short: "partial file"); the playlists tell.
			err = invalidf("abr: file is truncated or corrupt: only %.1f s of %.1f s could be decoded", decoded, o.Info.Duration)
		}
		if err == nil {
			if o.Progress != nil && reported < 1 {
				o.Progress(1)
			}
			return result, nil
		}
	}
	if rmErr := removeOutputs(o.OutDir, n); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return Result{}, err
}

func (o TranscodeOptions) validate() error {
	if o.Info.Kind != KindVideo {
		return fmt.Errorf("abr: TranscodeHLS needs the Info of a probed video, got kind %q", o.Info.Kind)
	}
	if o.Src == "" || o.OutDir == "" {
		return errors.New("abr: TranscodeHLS needs Src and OutDir")
	}
	if strings.Contains(o.OutDir, "%") {
		// The HLS muxer expands %v and %d in output paths.
		return fmt.Errorf("abr: output directory %q must not contain %%", o.OutDir)
	}
	if len(o.Rungs) == 0 {
		return fmt.Errorf("abr: no ladder for a %dx%d source", o.Info.Width, o.Info.Height)
	}
	for i, r := range o.Rungs {
		if r.Width < 2 || r.Height < 2 || r.Width%2 != 0 || r.Height%2 != 0 {
			return fmt.Errorf("abr: rung %d (%s): size %dx%d must be even and at least 2x2", i, r.Name, r.Width, r.Height)
		}
		if r.VideoKbps <= 0 || r.MaxKbps < 0 || r.BufKbps < 0 {
			return fmt.Errorf("abr: rung %d (%s): bad bitrates", i, r.Name)
		}
		if o.Info.HasAudio && r.AudioKbps <= 0 {
			return fmt.Errorf("abr: rung %d (%s): AudioKbps must be set for a source with audio", i, r.Name)
		}
	}
	if !validPreset(o.Preset) {
		return fmt.Errorf("abr: unknown x264 preset %q", o.Preset)
	}
	if o.SegmentSeconds > 60 {
		return fmt.Errorf("abr: segment length %d s is over 60 s", o.SegmentSeconds)
	}
	if o.Threads < 0 {
		return fmt.Errorf("abr: negative thread count %d", o.Threads)
	}
	return nil
}

// ffmpegFailure turns a failed ffmpeg run into an error: the interruption,
// an input error (wrapping ErrInvalid) when stderr blames the input, or a
// plain, retryable error.
func ffmpegFailure(res runResult, paths map[string]string) error {
	if res.interrupted != nil {
		return res.interrupted
	}
	if err := pixelLimitError(res.stderr); err != nil && exitedNormally(res.exitErr) {
		return err
	}
	ex := excerpt(res.stderr, paths)
	if exitedNormally(res.exitErr) && blamesInput(res.stderr) {
		return &invalidError{msg: "abr: file is truncated or corrupt: " + ex, cause: res.exitErr}
	}
	return fmt.Errorf("abr: ffmpeg failed: %s: %w", ex, res.exitErr)
}

// removeOutputs deletes what TranscodeHLS writes for an n-rung ladder.
func removeOutputs(outDir string, n int) error {
	var errs []error
	if err := os.Remove(filepath.Join(outDir, masterName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	_ = os.Remove(filepath.Join(outDir, masterName+".tmp"))
	for i := range n {
		if err := os.RemoveAll(filepath.Join(outDir, variantDir(i))); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("abr: clean output: %w", err)
	}
	return nil
}

// readProgress reads ffmpeg's -progress output until EOF and calls fn with
// increasing fractions of duration, at most once per every. It returns the
// last fraction passed to fn.
func readProgress(r io.Reader, duration float64, every time.Duration, fn func(float64)) float64 {
	sc := bufio.NewScanner(r)
	var (
		cur, last float64
		lastAt    time.Time
		sawUs     bool
	)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), "=")
		switch key {
		case "out_time_us", "out_time_ms":
			// ffmpeg writes microseconds under both keys (out_time_ms is
			// misnamed); prefer out_time_us when present.
			if key == "out_time_us" {
				sawUs = true
			} else if sawUs {
				continue
			}
			if us, err := strconv.ParseInt(val, 10, 64); err == nil && us > 0 && duration > 0 {
				cur = min(1, float64(us)/1e6/duration)
			}
		case "progress":
			if fn == nil || cur <= last {
				continue
			}
			if now := time.Now(); lastAt.IsZero() || now.Sub(lastAt) >= every {
				fn(cur)
				last, lastAt = cur, now
			}
		}
	}
	return last
}

// truncated reports whether the decoded duration falls clearly short of
// the probed one (by more than a quarter and more than a second).
func truncated(decoded, probed float64) bool {
	return probed > 0 && decoded < 0.75*probed && probed-decoded > 1
}

// collectHLS checks what ffmpeg wrote and describes it. It also returns
// the longest media playlist's duration (sum of #EXTINF).
func collectHLS(outDir string, rungs []Rung, audio bool) (Result, float64, error) {
	master, err := os.ReadFile(filepath.Join(outDir, masterName))
	if err != nil {
		return Result{}, 0, fmt.Errorf("abr: ffmpeg wrote no master playlist: %w", err)
	}
	bw := masterBandwidths(string(master))
	res := Result{Master: masterName}
	decoded := 0.0
	for i, r := range rungs {
		pl := variantDir(i) + "/index.m3u8"
		body, err := os.ReadFile(filepath.Join(outDir, filepath.FromSlash(pl)))
		if err != nil {
			return Result{}, 0, fmt.Errorf("abr: ffmpeg wrote no playlist for rung %s: %w", r.Name, err)
		}
		decoded = max(decoded, playlistSeconds(string(body)))
		b, ok := bw[pl]
		if !ok { // what ffmpeg computes: (video + audio) + 10 %
			a := 0
			if audio {
				a = r.AudioKbps
			}
			b = (r.VideoKbps + a) * 1100
		}
		res.Variants = append(res.Variants, Variant{Rung: r, Playlist: pl, Bandwidth: b})
	}
	res.Files = append(res.Files, masterName)
	for i := range rungs {
		dir := variantDir(i)
		entries, err := os.ReadDir(filepath.Join(outDir, dir))
		if err != nil {
			return Result{}, 0, fmt.Errorf("abr: %w", err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				res.Files = append(res.Files, dir+"/"+e.Name())
			}
		}
	}
	slices.Sort(res.Files)
	return res, decoded, nil
}

// playlistSeconds sums the #EXTINF durations of a media playlist.
func playlistSeconds(pl string) float64 {
	total := 0.0
	for raw := range strings.SplitSeq(pl, "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(raw), "#EXTINF:"); ok {
			d, _, _ = strings.Cut(d, ",")
			if f, err := strconv.ParseFloat(d, 64); err == nil && f > 0 {
				total += f
			}
		}
	}
	return total
}

// masterBandwidths maps each variant URI of a master playlist to its
// BANDWIDTH attribute.
func masterBandwidths(master string) map[string]int {
	out := map[string]int{}
	pending := -1
	for raw := range strings.SplitSeq(master, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			pending = -1
			for attr := range strings.SplitSeq(strings.TrimPrefix(line, "#EXT-X-STREAM-INF:"), ",") {
				if v, ok := strings.CutPrefix(attr, "BANDWIDTH="); ok {
					if b, err := strconv.Atoi(v); err == nil {
						pending = b
					}
				}
			}
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			if pending >= 0 {
				out[line] = pending
			}
			pending = -1
		}
	}
	return out
}
