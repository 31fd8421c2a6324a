package abr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Poster sizes and JPEG quality.
const (
	posterMaxWidth = 640
	// jpegQScale is ffmpeg's mjpeg -q:v (2 best .. 31 worst); 4 is about
	// libjpeg quality 85.
	jpegQScale = "4"
)

// imageVariant names a JPEG file ImageVariants writes and its bound: width
// is capped at maxWidth and height at 4 x maxWidth (so a very tall
// image still yields a small file); sources are never upscaled.
type imageVariant struct {
	name     string
	maxWidth int
}

func imageVariants() []imageVariant {
	return []imageVariant{
		{"thumb.jpg", 320},
		{"large.jpg", 1280},
	}
}

// jpegOutputArgs are the per-output options of every JPEG written: one
// frame, no metadata (EXIF, GPS, comments), no encoder tag, quality ~85.
func jpegOutputArgs(mapLabel, path string) []string {
	return []string{
		"-map", mapLabel, "-frames:v", "1",
		"-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
		"-q:v", jpegQScale, "-f", "mjpeg", path,
	}
}

// Poster writes a JPEG poster frame of a video to out: the frame at 10 % of
// the duration (the first frame if that yields nothing), at most 640 px
// wide, metadata stripped. out is written atomically (temporary file in
// the same directory, then rename).
func Poster(ctx context.Context, t Tools, src string, info Info, out string) error {
	lim := Limits{}.withDefaults()
	bin, err := t.ffmpeg()
	if err != nil {
		return err
	}
	src, out = absOr(src), absOr(out)
	dir := filepath.Dir(out)
	tmp, err := tempName(dir, ".poster-*.jpg")
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename

	at := 0.0
	if info.Kind == KindVideo && info.Duration > 0 {
		at = info.Duration / 10
	}
	for {
		// Seek before -i: fast (to the keyframe before, then decode to the
		// exact time).
		args := inputArgs(lim, 0, info.Format, src, "-ss", strconv.FormatFloat(at, 'f', 3, 64))
		args = append(args, "-vf", fmt.Sprintf("scale=w='min(%d,iw)':h=-2,format=yuvj420p", posterMaxWidth), "-an", "-sn", "-dn")
		args = append(args, jpegOutputArgs("0:V:0", tmp)...)
		res, err := runTool(ctx, lim.Timeout, "ffmpeg", bin, dir, args, nil)
		if err == nil && res.failed() {
			err = ffmpegFailure(res, map[string]string{src: "input", tmp: "output"})
		}
		if err != nil {
			return err
		}
		if fi, err := os.Stat(tmp); err == nil && fi.Size() > 0 {
			break
		}
		if at == 0 {
			return invalidf("abr: no video frame could be decoded for the poster")
		}
		at = 0 // the seek went past the last frame (duration was wrong)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("abr: %w", err)
	}
	return nil
}

// ImageVariants writes resized JPEG variants of an image into outDir and
// returns their names relative to outDir: "thumb.jpg" (at most 320 px wide)
// and "large.jpg" (at most 1280 px wide), each at most 4 times as tall as
// its width bound, never upscaled, so a small image yields two files of
// its own size. One ffmpeg run decodes the image once (first frame of an
// animation; EXIF orientation applied by ffmpeg), flattens transparency
// onto white, scales with Lanczos, and writes JPEG at quality ~85 with all
// metadata stripped. Files appear atomically (temporary name, then rename).
func ImageVariants(ctx context.Context, t Tools, lim Limits, src string, info Info, outDir string) ([]string, error) {
	lim = lim.withDefaults()
	if info.Width <= 0 || info.Height <= 0 {
		return nil, errors.New("abr: ImageVariants needs the Info of a probed image")
	}
	if overPixels(info.Width, info.Height, lim.MaxPixels) {
		return nil, invalidf("abr: image is %dx%d pixels, over the %d pixel limit", info.Width, info.Height, lim.MaxPixels)
	}
	bin, err := t.ffmpeg()
	if err != nil {
		return nil, err
	}
	src, outDir = absOr(src), absOr(outDir)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("abr: %w", err)
	}

	variants := imageVariants()
	tmps := make([]string, len(variants))
	defer func() {
		for _, p := range tmps {
			if p != "" {
				_ = os.Remove(p) // no-op after the rename
			}
		}
	}()
	var fc strings.Builder
	fmt.Fprintf(&fc, "[0:v:0]split=%d", len(variants))
	for i := range variants {
		fmt.Fprintf(&fc, "[i%d]", i)
	}
	var outArgs []string
	for i, v := range variants {
		w, h := fitWithin(info.Width, info.Height, v.maxWidth, 4*v.maxWidth)
		fmt.Fprintf(&fc, ";[i%d]scale=w=%d:h=%d:flags=lanczos,format=rgba[f%d]", i, w, h, i)
		fmt.Fprintf(&fc, ";color=c=white:s=%dx%d[b%d]", w, h, i)
		fmt.Fprintf(&fc, ";[b%d][f%d]overlay=shortest=1:format=auto,format=yuvj420p[o%d]", i, i, i)
		tmp, err := tempName(outDir, ".tmp-*-"+v.name)
		if err != nil {
			return nil, err
		}
		tmps[i] = tmp
		outArgs = append(outArgs, jpegOutputArgs(fmt.Sprintf("[o%d]", i), tmp)...)
	}
	args := inputArgs(lim, 0, info.Format, src)
	args = append(args, "-filter_complex", fc.String())
	args = append(args, outArgs...)

	res, err := runTool(ctx, lim.Timeout, "ffmpeg", bin, outDir, args, nil)
	if err == nil && res.failed() {
		err = ffmpegFailure(res, map[string]string{src: "input", outDir: "output"})
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(variants))
	for i, v := range variants {
		if fi, err := os.Stat(tmps[i]); err != nil || fi.Size() == 0 {
			return nil, invalidf("abr: the image could not be decoded")
		}
		if err := os.Rename(tmps[i], filepath.Join(outDir, v.name)); err != nil {
			return nil, fmt.Errorf("abr: %w", err)
		}
		names[i] = v.name
	}
	return names, nil
}

// fitWithin scales w x h down to fit maxW x maxH, keeping the aspect ratio
// (rounded, at least 1 px); a source that fits is returned unchanged.
func fitWithin(w, h, maxW, maxH int) (int, int) {
	if w <= maxW && h <= maxH {
		return w, h
	}
	W, H, mW, mH := int64(w), int64(h), int64(maxW), int64(maxH)
	if W*mH >= H*mW { // width-limited
		return maxW, int(max(1, (2*H*mW+W)/(2*W)))
	}
	return int(max(1, (2*W*mH+H)/(2*H))), maxH
}

// tempName reserves a unique file name in dir.
func tempName(dir, pattern string) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("abr: %w", err)
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("abr: %w", err)
	}
	return name, nil
}
