package abr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxProbeOutput caps ffprobe's JSON output. A normal file produces a few
// kilobytes; only a file with thousands of streams or tags comes near this.
const maxProbeOutput = 4 << 20

// demuxers returns the ffmpeg demuxers an input may be opened with (sorted).
// Everything else is refused, in particular the demuxers that open other
// files or URLs named inside the input (hls, concat, image2 patterns, ...),
// which is how a "video" can exfiltrate local files.
func demuxers() []string {
	return []string{
		"apng", "asf", "avi", "bmp_pipe", "flv", "gif", "jpeg_pipe",
		"matroska", "mov", "mpeg", "mpegts", "mxf", "ogg", "png_pipe",
		"tiff_pipe", "webp_pipe",
	}
}

// demuxerWhitelist is the -format_whitelist value.
func demuxerWhitelist() string { return strings.Join(demuxers(), ",") }

// isImageDemuxer reports whether a demuxer yields still images.
func isImageDemuxer(name string) bool {
	switch name {
	case "apng", "bmp_pipe", "gif", "jpeg_pipe", "png_pipe", "tiff_pipe", "webp_pipe":
		return true
	}
	return false
}

// isImageCodec reports whether a codec is a still-image codec, for a
// single-frame stream inside a generic container.
func isImageCodec(name string) bool {
	switch name {
	case "png", "apng", "mjpeg", "jpegls", "gif", "webp", "bmp", "tiff":
		return true
	}
	return false
}

// knownDemuxer returns the first name of an ffprobe format_name (a comma
// separated list such as "mov,mp4,m4a,3gp,3g2,mj2") that is on the
// allow-list, or "".
func knownDemuxer(formatName string) string {
	allowed := demuxers()
	for name := range strings.SplitSeq(formatName, ",") {
		for _, a := range allowed {
			if name == a {
				return a
			}
		}
	}
	return ""
}

// Probe inspects the file at path and describes it. Errors that are the
// file's fault wrap ErrInvalid.
//
// Order of checks: the file must be a non-empty regular file; PNG, JPEG and
// GIF headers are decoded with the standard library and refused above
// lim.MaxPixels before ffprobe runs; ffprobe then runs with a demuxer
// allow-list, the file protocol only and a decoder pixel cap; its JSON is
// parsed and validated (a video stream with dimensions and a duration,
// within the limits).
func Probe(ctx context.Context, t Tools, lim Limits, path string) (Info, error) {
	lim = lim.withDefaults()
	abs, err := filepath.Abs(path)
	if err != nil {
		return Info{}, fmt.Errorf("abr: probe: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return Info{}, fmt.Errorf("abr: probe: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("abr: probe: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("abr: probe: %s is not a regular file", path)
	}
	if fi.Size() == 0 {
		return Info{}, invalidf("abr: empty file")
	}
	orientation, err := checkImageHeader(f, lim.MaxPixels)
	if err != nil {
		return Info{}, err
	}

	bin, err := t.ffprobe()
	if err != nil {
		return Info{}, err
	}
	var out []byte
	res, err := runTool(ctx, lim.probeTimeout(), "ffprobe", bin, "", probeArgs(abs, lim), func(r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, maxProbeOutput+1))
		if err != nil {
			return fmt.Errorf("abr: read ffprobe output: %w", err)
		}
		if len(b) > maxProbeOutput {
			return invalidf("abr: file has too many streams or too much metadata (ffprobe output over %d bytes)", maxProbeOutput)
		}
		out = b
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	if res.interrupted != nil {
		return Info{}, res.interrupted
	}
	if res.exitErr != nil {
		if !exitedNormally(res.exitErr) {
			return Info{}, fmt.Errorf("abr: ffprobe: %w: %s", res.exitErr, excerpt(res.stderr, map[string]string{abs: "input"}))
		}
		return Info{}, probeFailure(res.stderr, abs)
	}
	info, rotated, err := parseProbeRotated(out, lim)
	if err != nil {
		return Info{}, err
	}
	// ffprobe 5.1 does not report EXIF orientation, but ffmpeg applies it
	// when decoding, so Info must describe the upright image.
	if info.Kind == KindImage && !rotated && orientation >= 5 && orientation <= 8 {
		info.Width, info.Height = info.Height, info.Width
	}
	return info, nil
}

func probeArgs(abs string, lim Limits) []string {
	return []string{
		"-hide_banner", "-v", "error",
		"-protocol_whitelist", "file",
		"-format_whitelist", demuxerWhitelist(),
		"-max_pixels", maxPixelsArg(lim.MaxPixels),
		"-print_format", "json", "-show_format", "-show_streams",
		"file:" + abs,
	}
}

// maxPixelsArg renders MaxPixels for ffmpeg's -max_pixels (0..INT_MAX).
func maxPixelsArg(n int64) string {
	return strconv.FormatInt(min(n, math.MaxInt32), 10)
}

// probeFailure turns a failed ffprobe run into an input error.
func probeFailure(stderr, abs string) error {
	if err := pixelLimitError(stderr); err != nil {
		return err
	}
	low := strings.ToLower(stderr)
	if strings.Contains(low, "not on whitelist") {
		return invalidf("abr: not a media file (unsupported format)")
	}
	// A file no demuxer recognises yields exactly one line,
	// "<path>: Invalid data found when processing input".
	other := false
	for raw := range strings.SplitSeq(stderr, "\n") {
		l := strings.TrimSpace(raw)
		if l != "" && !strings.HasSuffix(l, "Invalid data found when processing input") {
			other = true
		}
	}
	if !other {
		return invalidf("abr: not a media file")
	}
	return invalidf("abr: file is truncated or corrupt: %s", excerpt(stderr, map[string]string{abs: "input"}))
}

// pixelLimitError recognises a decoder refusing a frame over -max_pixels
// ("Picture size 640x360 exceeds specified max pixel count 229760, ...")
// and returns the same input error Probe gives for a header over the limit.
func pixelLimitError(stderr string) error {
	const marker = " exceeds specified max pixel count "
	for raw := range strings.SplitSeq(stderr, "\n") {
		before, after, ok := strings.Cut(raw, marker)
		if !ok {
			continue
		}
		_, size, ok1 := strings.Cut(before, "Picture size ")
		limit, _, _ := strings.Cut(after, ",")
		w, h, ok2 := strings.Cut(size, "x")
		wi, err1 := strconv.Atoi(w)
		hi, err2 := strconv.Atoi(h)
		li, err3 := strconv.ParseInt(strings.TrimSpace(limit), 10, 64)
		if ok1 && ok2 && err1 == nil && err2 == nil && err3 == nil {
			return invalidf("abr: picture is %dx%d pixels, over the %d pixel limit", wi, hi, li)
		}
		return invalidf("abr: picture is over the pixel limit")
	}
	return nil
}

// checkImageHeader decodes the header of a PNG, JPEG or GIF file and
// refuses it when it is corrupt or above maxPixels. Nothing but the header
// is read; no pixel memory is allocated. For a JPEG it also returns the
// EXIF orientation (1 when absent); for other files 1.
func checkImageHeader(f *os.File, maxPixels int64) (int, error) {
	var magic [8]byte
	n, _ := f.ReadAt(magic[:], 0)
	var decode func(io.Reader) (image.Config, error)
	isJPEG := false
	switch m := magic[:n]; {
	case bytes.HasPrefix(m, []byte("\x89PNG\r\n\x1a\n")):
		decode = png.DecodeConfig
	case bytes.HasPrefix(m, []byte{0xff, 0xd8, 0xff}):
		decode, isJPEG = jpeg.DecodeConfig, true
	case bytes.HasPrefix(m, []byte("GIF87a")), bytes.HasPrefix(m, []byte("GIF89a")):
		decode = gif.DecodeConfig
	default:
		return 1, nil
	}
	cfg, err := decode(bufio.NewReader(io.NewSectionReader(f, 0, math.MaxInt64)))
	if err != nil {
		var pu png.UnsupportedError
		var ju jpeg.UnsupportedError
		if errors.As(err, &pu) || errors.As(err, &ju) {
			// Valid but beyond Go's decoder (e.g. arithmetic-coded JPEG):
			// let ffprobe decide, under its -max_pixels cap.
			return 1, nil
		}
		return 0, &invalidError{msg: "abr: file is truncated or corrupt: " + err.Error(), cause: err}
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, invalidf("abr: image has no pixels (%dx%d)", cfg.Width, cfg.Height)
	}
	if overPixels(cfg.Width, cfg.Height, maxPixels) {
		return 0, invalidf("abr: image is %dx%d pixels, over the %d pixel limit", cfg.Width, cfg.Height, maxPixels)
	}
	if !isJPEG {
		return 1, nil
	}
	head := make([]byte, 256<<10)
	n, _ = f.ReadAt(head, 0)
	return exifOrientation(head[:n]), nil
}

// overPixels reports whether w*h > limit without overflowing; w, h > 0.
func overPixels(w, h int, limit int64) bool {
	return int64(w) > limit/int64(h)
}

// exifOrientation returns the EXIF Orientation (1..8) of a JPEG whose first
// bytes are data, or 1 when there is none or it cannot be read.
func exifOrientation(data []byte) int {
	if len(data) < 4 || data[0] != 0xff || data[1] != 0xd8 {
		return 1
	}
	p := 2
	for p+4 <= len(data) {
		if data[p] != 0xff {
			return 1
		}
		marker := data[p+1]
		if marker == 0xff { // fill byte
			p++
			continue
		}
		if marker == 0xd8 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7) {
			p += 2
			continue
		}
		if marker == 0xda || marker == 0xd9 { // start of scan / end of image
			return 1
		}
		segLen := int(binary.BigEndian.Uint16(data[p+2:]))
		if segLen < 2 || p+2+segLen > len(data) {
			return 1
		}
		seg := data[p+4 : p+2+segLen]
		if marker == 0xe1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
		p += 2 + segLen
	}
	return 1
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF structure.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	ifd := int64(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 1
	}
	count := int64(bo.Uint16(t[ifd:]))
	for i := range count {
		e := ifd + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 1
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		// type SHORT (3), count 1: the value sits in the first two bytes
		// of the value field.
		if bo.Uint16(t[e+2:]) != 3 || bo.Uint32(t[e+4:]) != 1 {
			return 1
		}
		if v := int(bo.Uint16(t[e+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}

// probeOutput is the part of ffprobe's JSON that Probe reads.
type probeOutput struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

type probeStream struct {
	CodecType         string `json:"codec_type"`
	CodecName         string `json:"codec_name"`
	Width             int    `json:"width"`
	Height            int    `json:"height"`
	SampleAspectRatio string `json:"sample_aspect_ratio"`
	AvgFrameRate      string `json:"avg_frame_rate"`
	RFrameRate        string `json:"r_frame_rate"`
	Duration          string `json:"duration"`
	NbFrames          string `json:"nb_frames"`
	Disposition       struct {
		AttachedPic int `json:"attached_pic"`
	} `json:"disposition"`
	Tags struct {
		Rotate string `json:"rotate"`
	} `json:"tags"`
	SideDataList []struct {
		Rotation float64 `json:"rotation"`
	} `json:"side_data_list"`
}

// parseProbe validates ffprobe's JSON output (-show_format -show_streams)
// against lim (which must have its defaults applied) and returns the Info.
func parseProbe(data []byte, lim Limits) (Info, error) {
	info, _, err := parseProbeRotated(data, lim)
	return info, err
}

// parseProbeRotated is parseProbe that also reports whether a rotation of
// 90 or 270 degrees was applied to Width and Height.
func parseProbeRotated(data []byte, lim Limits) (Info, bool, error) {
	var p probeOutput
	if err := json.Unmarshal(data, &p); err != nil {
		return Info{}, false, fmt.Errorf("abr: parse ffprobe output: %w", err)
	}
	if p.Format.FormatName == "" && len(p.Streams) == 0 {
		return Info{}, false, invalidf("abr: not a media file")
	}
	demuxer := knownDemuxer(p.Format.FormatName)
	if demuxer == "" {
		return Info{}, false, invalidf("abr: not a media file (unsupported format)")
	}
	var v *probeStream
	hasAudio := false
	for i := range p.Streams {
		s := &p.Streams[i]
		switch s.CodecType {
		case "video":
			// Cover art in an audio file is a "video" stream; skip it.
			if v == nil && s.Disposition.AttachedPic == 0 {
				v = s
			}
		case "audio":
			hasAudio = true
		}
	}
	if v == nil {
		if hasAudio {
			return Info{}, false, invalidf("abr: no video stream (audio-only files are not supported)")
		}
		return Info{}, false, invalidf("abr: no video or image stream")
	}
	w, h := v.Width, v.Height
	if w <= 0 || h <= 0 {
		return Info{}, false, invalidf("abr: picture size is unknown: the file is corrupt or over the %d pixel limit", lim.MaxPixels)
	}
	if overPixels(w, h, lim.MaxPixels) {
		return Info{}, false, invalidf("abr: picture is %dx%d pixels, over the %d pixel limit", w, h, lim.MaxPixels)
	}
	// Non-square pixels: describe the displayed width. Absurd ratios are
	// ignored rather than trusted.
	if n, d, ok := parseRatio(v.SampleAspectRatio, ":"); ok && n != d {
		if r := float64(n) / float64(d); r >= 0.25 && r <= 4 {
			w = max(2, int(math.Round(float64(w)*r)))
			if overPixels(w, h, lim.MaxPixels) {
				return Info{}, false, invalidf("abr: picture is %dx%d pixels, over the %d pixel limit", w, h, lim.MaxPixels)
			}
		}
	}
	rotated := false
	if quarterTurns(v)%2 == 1 {
		w, h = h, w
		rotated = true
	}

	info := Info{
		Format:     p.Format.FormatName,
		Width:      w,
		Height:     h,
		VideoCodec: v.CodecName,
	}
	if isImageDemuxer(demuxer) || (isImageCodec(v.CodecName) && v.NbFrames == "1" && !hasAudio) {
		info.Kind = KindImage
		return info, rotated, nil
	}

	info.Kind = KindVideo
	info.HasAudio = hasAudio
	if w < minVideoSide || h < minVideoSide {
		return Info{}, false, invalidf("abr: video is %dx%d, below the %dx%d minimum", w, h, minVideoSide, minVideoSide)
	}
	dur := parseSeconds(p.Format.Duration)
	if dur <= 0 {
		dur = parseSeconds(v.Duration)
	}
	if dur <= 0 {
		return Info{}, false, invalidf("abr: video has no duration: the file is truncated or corrupt")
	}
	if dur > lim.MaxDuration.Seconds() {
		return Info{}, false, invalidf("abr: video is %s long, over the %s limit", secondsString(dur), lim.MaxDuration)
	}
	info.Duration = dur
	info.FPS = parseRate(v.AvgFrameRate)
	if info.FPS == 0 {
		info.FPS = parseRate(v.RFrameRate)
	}
	return info, rotated, nil
}

// quarterTurns returns the stream's rotation in quarter turns (0..3),
// from the display matrix side data or else the legacy "rotate" tag.
func quarterTurns(s *probeStream) int {
	deg := 0.0
	for _, sd := range s.SideDataList {
		if sd.Rotation != 0 {
			deg = sd.Rotation
			break
		}
	}
	if deg == 0 && s.Tags.Rotate != "" {
		if r, err := strconv.Atoi(s.Tags.Rotate); err == nil {
			deg = float64(r)
		}
	}
	if math.IsNaN(deg) || math.IsInf(deg, 0) {
		return 0
	}
	q := math.Mod(math.Round(deg/90), 4)
	if q < 0 {
		q += 4
	}
	return int(q)
}

// parseSeconds parses an ffprobe duration; anything but a finite,
// positive number yields 0.
func parseSeconds(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0
	}
	return f
}

// parseRate parses an ffprobe rate like "30000/1001"; anything but a
// finite rate in (0, 1000] yields 0.
func parseRate(s string) float64 {
	n, d, ok := parseRatio(s, "/")
	if !ok {
		return 0
	}
	f := float64(n) / float64(d)
	if f <= 0 || f > 1000 {
		return 0
	}
	return f
}

// parseRatio parses "n<sep>d" with both parts positive.
func parseRatio(s, sep string) (int64, int64, bool) {
	a, b, ok := strings.Cut(s, sep)
	if !ok {
		return 0, 0, false
	}
	n, err1 := strconv.ParseInt(a, 10, 64)
	d, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || n <= 0 || d <= 0 {
		return 0, 0, false
	}
	return n, d, true
}

// secondsString renders a duration in seconds for a message.
func secondsString(sec float64) string {
	if sec > 1e9 {
		return strconv.FormatFloat(sec, 'g', 3, 64) + "s"
	}
	return time.Duration(sec * float64(time.Second)).Round(time.Second).String()
}
