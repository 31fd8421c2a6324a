package abr

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// Tools names the ffmpeg and ffprobe binaries. An empty field means the
// binary is looked up as "ffmpeg" or "ffprobe" in PATH.
type Tools struct {
	FFmpeg, FFprobe string
}

// Limits bounds the work one input may cause. Zero fields take the defaults
// below.
type Limits struct {
	// MaxPixels is the largest frame or image accepted, in pixels
	// (width*height). Default 40,000,000. For PNG, JPEG and GIF it is checked
	// from the file header before any decoder runs; for everything else it
	// is also passed to the decoders as -max_pixels.
	MaxPixels int64
	// MaxDuration is the longest video accepted. Default 4h.
	MaxDuration time.Duration
	// Timeout bounds each ffmpeg run. Default 2h. ffprobe runs are bounded
	// by the smaller of Timeout and 2 minutes.
	Timeout time.Duration
}

// Defaults applied by withDefaults.
const (
	DefaultMaxPixels      int64         = 40_000_000
	DefaultMaxDuration    time.Duration = 4 * time.Hour
	DefaultTimeout        time.Duration = 2 * time.Hour
	DefaultSegmentSeconds               = 2
	DefaultPreset                       = "veryfast"

	// probeTimeoutCap bounds ffprobe runs: probing reads headers only, so a
	// probe that runs longer than this is stuck on a hostile file.
	probeTimeoutCap = 2 * time.Minute
	// minVideoSide is the smallest width or height accepted for a video.
	minVideoSide = 16
)

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxDuration <= 0 {
		l.MaxDuration = DefaultMaxDuration
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return l
}

func (l Limits) probeTimeout() time.Duration {
	return min(l.Timeout, probeTimeoutCap)
}

// Kind of media.
const (
	KindVideo = "video"
	KindImage = "image"
)

// Info describes a probed input.
type Info struct {
	Kind          string  // KindVideo or KindImage
	Format        string  // ffprobe format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
	Duration      float64 // seconds (0 for images)
	Width, Height int     // display size: rotation and non-square pixels applied
	FPS           float64 // average frame rate; 0 when unknown and for images
	VideoCodec    string  // ffprobe codec_name of the video/image stream
	HasAudio      bool    // the file has at least one audio stream (always false for images)
}

// ErrInvalid is wrapped by every error that is the input's fault: not media,
// truncated, too large, too long, no video stream, empty. The wrapping
// error's message is the human-readable reason, e.g. "abr: not a media file".
var ErrInvalid = errors.New("abr: invalid media")

// invalidError is an input error: its message is the reason shown to the
// user, and it matches ErrInvalid (and its cause, if any) with errors.Is.
type invalidError struct {
	msg   string
	cause error
}

func (e *invalidError) Error() string { return e.msg }

func (e *invalidError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.cause}
}

func invalidf(format string, a ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, a...)}
}

func (t Tools) ffmpeg() (string, error)  { return lookTool(t.FFmpeg, "ffmpeg") }
func (t Tools) ffprobe() (string, error) { return lookTool(t.FFprobe, "ffprobe") }

func lookTool(configured, name string) (string, error) {
	if configured == "" {
		configured = name
	}
	p, err := exec.LookPath(configured)
	if err != nil {
		return "", fmt.Errorf("abr: %s not found: %w", name, err)
	}
	// Runs set their working directory to the output directory, where a
	// relative path would no longer point at the binary.
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p, nil
}
